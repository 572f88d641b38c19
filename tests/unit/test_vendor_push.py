"""The router push against the vendor CLI twins (jincai.lab.vendorsim on 127.0.0.1, real netmiko).

Proofs of issue 15 on every vendor platform: first contact with a router carrying operator lines
(push succeeds, every unmanaged line is still there, a second run and ``--check --diff`` are
clean); an invalid line mid-push (rolled back, the device equals its pre-change config, the error
names the line); the session dropped mid-push (the device's own timer restores the last good
config and the push reports it rolled back); an unexpected confirmation prompt (abort, restore).
Device timers run on a fast clock (``time_scale``): one device minute is a few real seconds.
"""

import pytest

from netconfig_support import (
    VENDOR_PLATFORMS, Failed, FakeModule, intended, load_module, nc, simulator, start_config,
)

from jincai.lab.vendorsim import Session, SimDevice

SCALE = 0.1  # a 1-minute device timer lasts 6 s: room for a whole push, confirmed from a new session


@pytest.fixture(scope="module")
def mod():
    return load_module()


@pytest.fixture
def sim_of(tmp_path):
    started = []

    def make(platform, **options):
        options.setdefault("time_scale", SCALE)
        sim = simulator(platform, state_file=str(tmp_path / f"{platform}.json"), **options)
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.close()
        sim.device.close()


def push(mod, sim, platform, config=None, **kw):
    """Run the module against ``sim`` (password login, the simulator's clock)."""
    params = dict(platform=platform, host="127.0.0.1", port=sim.port, password="netops", timeout=5,
                  rollback_timer=60, timer_scale=sim.device.time_scale)
    params.update(kw.pop("params", {}))
    return mod.run(FakeModule(intended(platform) if config is None else config, **kw, **params))


def tree(sim, platform):
    """The simulated router's running config as the engine parses it."""
    return nc.parse(sim.device.render(sim.device.running), nc.PLATFORMS[platform])


def restored(sim, platform, before):
    """The device holds its pre-change config (IOS: plus the archive jincai adds to arm its revert timer)."""
    now = tree(sim, platform)
    if platform == "cisco_ios":
        assert list(now.pop("archive").children) == ["path flash:jincai-rollback", "maximum 14"]
    return nc.same(now, before)


def lines(sim, platform):
    """Every line of the running config as ``section > line`` paths."""
    out = set()
    for key, node in tree(sim, platform).items():
        out.add(key)
        out.update(f"{key} > {k}" for k in node.children)
    return out


@pytest.mark.parametrize("platform", VENDOR_PLATFORMS)
def test_first_contact_keeps_every_unmanaged_line_and_converges(mod, sim_of, platform):
    sim = sim_of(platform)
    plat = nc.PLATFORMS[platform]
    before = lines(sim, platform)
    res = push(mod, sim, platform)
    assert res["changed"] is True
    # the operator's lines (aaa, local users, console, licence, own ACL, own interface, default route)
    unmanaged = set(res["unmanaged"])
    assert unmanaged and unmanaged <= before
    assert unmanaged <= lines(sim, platform), f"lost: {unmanaged - lines(sim, platform)}"
    assert any("local-user" in u or "username" in u for u in unmanaged)
    assert any(u.startswith(("acl number 3999", "acl advanced 3999", "ip access-list extended OPS-MAINT"))
               for u in unmanaged)
    # the owned parts are jincai's: intended config fully there, the device timer disarmed
    assert nc.plan_owned(tree(sim, platform), nc.parse(intended(platform), plat), plat)[0] == []
    assert sim.device.timer is None and sim.device.events == []
    assert nc.same(nc.parse(sim.device.render(sim.device.startup), plat), tree(sim, platform))  # saved
    # second run (with --diff): nothing to do, no diff; the check mode computes the same plan
    again = push(mod, sim, platform, diff=True)
    assert again["changed"] is False and again["commands"] == [] and "diff" not in again


def test_check_diff_changes_nothing_and_shows_unmanaged_lines_as_kept(mod, sim_of):
    sim = sim_of("huawei_vrp")
    before = tree(sim, "huawei_vrp")
    res = push(mod, sim, "huawei_vrp", check=True, diff=True)
    assert res["changed"] is True and nc.same(tree(sim, "huawei_vrp"), before) and sim.device.timer is None
    for side in ("before", "after"):
        assert "# unmanaged, kept:\n" in res["diff"][side]
        assert "#   aaa > local-user admin privilege level 15\n" in res["diff"][side]
    # the owned part only: an operator's line inside a jincai interface is listed as kept, not as removed
    assert "\n mtu 1400\n" not in res["diff"]["before"] and "\n ospf cost 50\n" in res["diff"]["before"]
    assert "undo ospf cost" in res["commands"]  # a contradicting owned line is brought in line
    assert not any("local-user" in c or "3999" in c for c in res["commands"])


INVALID = {"huawei_vrp": " ospf frobnicate 7", "huawei_vrpv8": " ospf frobnicate 7",
           "cisco_ios": " ip ospf frobnicate 7", "h3c_comware": " ospf frobnicate 7"}


@pytest.mark.parametrize("platform", VENDOR_PLATFORMS)
def test_an_invalid_line_mid_push_is_rolled_back_and_named(mod, sim_of, platform):
    sim = sim_of(platform)
    before = tree(sim, platform)
    loopback = "interface Loopback0\n" if platform == "cisco_ios" else "interface LoopBack0\n"
    config = intended(platform).replace(loopback, loopback + INVALID[platform] + "\n")
    with pytest.raises(Failed) as err:
        push(mod, sim, platform, config=config)
    res = err.value.args[0]
    assert res["failed_line"] == INVALID[platform].strip()
    assert INVALID[platform].strip() in res["msg"]
    assert any(e in res["msg"] for e in ("Error: Unrecognized", "% Invalid input", "% Unrecognized command"))
    assert res["rolled_back"] is True and res["rolled_back_by"] == "control node"
    assert restored(sim, platform, before)
    assert sim.device.timer is None  # the device's way back was cancelled, not left to fire
    assert sim.device.events == []


def _config_lines_of_push(platform, sim):
    plat = nc.PLATFORMS[platform]
    cmds, _ = nc.plan_owned(tree(sim, platform), nc.parse(intended(platform), plat), plat)
    return len(cmds)


@pytest.mark.parametrize("platform,event", [("huawei_vrp", "reboot"), ("cisco_ios", "revert"),
                                            ("h3c_comware", "revert"), ("huawei_vrpv8", "revert")])
def test_a_session_dropped_mid_push_is_restored_by_the_device_timer(mod, sim_of, platform, event):
    sim = sim_of(platform, time_scale=0.03)
    before = tree(sim, platform)
    # VRP V8 changes nothing before its commit: cut it after `commit trial` (lines + commit trial + return)
    drop = _config_lines_of_push(platform, sim) + 2 if platform == "huawei_vrpv8" else 20
    sim.device.drop_after = drop
    with pytest.raises(Failed) as err:
        push(mod, sim, platform)
    res = err.value.args[0]
    assert "session lost" in res["msg"] and "own timer restored" in res["msg"]
    assert res["rolled_back"] is True and res["rolled_back_by"] == "device timer"
    assert [kind for kind, _ in sim.device.events] == [event]  # the device did it, not jincai
    assert restored(sim, platform, before)


@pytest.mark.parametrize("platform", ["h3c_comware", "cisco_ios"])
def test_an_unexpected_prompt_aborts_and_restores(mod, sim_of, platform):
    line = r"ospf 1 router-id .*" if platform == "h3c_comware" else r"router-id .*"
    sim = sim_of(platform, unexpected_prompt_re=line)
    before = tree(sim, platform)
    with pytest.raises(Failed) as err:
        push(mod, sim, platform)
    res = err.value.args[0]
    assert "unexpected prompt" in res["msg"] and "will reset the routing process" in res["msg"]
    assert res["rolled_back"] is True
    assert restored(sim, platform, before)
    assert sim.device.timer is None


@pytest.mark.parametrize("platform", VENDOR_PLATFORMS)
@pytest.mark.parametrize("tier", ["province", "city", "county"])
def test_every_tier_renders_what_the_twin_accepts_and_converges(platform, tier):
    """The planned commands of every golden config, typed into the twin's CLI (no SSH: fast): none
    refused, no question asked, and the owned parts then equal the intended config."""
    plat = nc.PLATFORMS[platform]
    dev = SimDevice(platform, None, start_config(platform))
    cli = Session(dev)
    want = nc.parse(intended(platform, tier), plat)
    cmds, _ = nc.plan_owned(nc.parse(dev.render(dev.running), plat), want, plat)
    cli.line(dev.dialect.enter_config)
    answers = [(c, cli.line(c)) for c in cmds + nc.write_only_lines(intended(platform, tier), plat)]
    refused = [(c, a) for c, a in answers if a.startswith("\0ASK") or "'^'" in a or a.lstrip().startswith("%")]
    assert refused == []
    if plat.commit:
        cli.line("commit")
    assert nc.plan_owned(nc.parse(dev.render(dev.running), plat), want, plat)[0] == []
    dev.close()


def test_a_push_longer_than_the_device_timer_is_reported_as_restored_by_the_device(mod, sim_of):
    """A timer too short for the push: the device reverts during it, the module says so (not 'did not converge')."""
    sim = sim_of("h3c_comware", time_scale=0.002)  # one minute = 0.12 s: shorter than the push
    before = tree(sim, "h3c_comware")
    with pytest.raises(Failed) as err:
        push(mod, sim, "h3c_comware")
    res = err.value.args[0]
    assert "outlasted the device timer" in res["msg"] and res["rolled_back_by"] == "device timer"
    assert restored(sim, "h3c_comware", before) and [k for k, _ in sim.device.events] == ["revert"]
