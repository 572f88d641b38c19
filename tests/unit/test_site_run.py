"""Pieces of ``make site``'s driver (jincai/site_run.py) that need no lab."""

import sys

from jincai import site_run


def test_verification_output_is_echoed_live_and_kept(capfd):
    rc, out = site_run._run_echoed([sys.executable, "-c",
                                    "import sys; sys.stdout.write('..F'); sys.stdout.flush(); "
                                    "print(); print('1 failed, 2 passed in 0.1s'); sys.exit(1)"])
    assert rc == 1
    assert out.splitlines()[-1] == "1 failed, 2 passed in 0.1s"
    assert "..F" in capfd.readouterr().out


def test_pytest_closing_line_is_counted():
    assert site_run._pytest_counts("3 failed, 250 passed, 2 errors in 900.1s (0:15:00)") == (250, 5)
    assert site_run._pytest_counts("no tests ran in 0.01s") == (0, 0)
