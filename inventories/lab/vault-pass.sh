#!/bin/sh
# Lab vault password (fixed on purpose: the lab's secrets are throw-away). Production inventories use
# their own vault password source, never this one.
echo 'jincai-lab-vault-2026'
