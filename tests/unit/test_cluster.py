"""Two Asterisk nodes behind Kamailio ([cluster] nodes): each node's ports, state and
rendered config, Kamailio's config, the stack's services, and the reconciler that
settles only its own node's calls. One Asterisk (dev, test) stays as it was."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from pathlib import Path

import pytest

from ivr.call_plan import plan_to_json
from ivr.model import OpenAttempt
from reconciler.main import NodeAttempts
from tests.unit.test_settlement import PLAN
from tools import kamailio_conf, stack
from tools.asterisk_conf import Terminal, asterisk_options_conf, render, terminals_conf
from tools.config import Secrets, StackConfig, load_config, node_config, nodes

SECRETS = Secrets("ami", "a" * 32, "orig", "b" * 32, "r" * 48, "c" * 64, realtime_password="d" * 48)


def _write(tmp_path: Path, extra: str, base: str = "config/test-two-nodes.toml") -> Path:
    text = (Path(__file__).resolve().parents[2] / base).read_text()
    path = tmp_path / "c.toml"
    path.write_text(text.replace("[cluster]\nnodes = 2\n", "") + extra)
    return path


def _listening(config: StackConfig) -> list[int]:
    """Every port a cluster's processes bind (nodes' and shared), and the trunk's."""
    ports = [config.sip_port, config.trunk_port, config.redis_port, config.api_port, config.postgres_port,
             config.pushbridge_metrics_port]
    for n in nodes(config):
        ports += [n.sip_port, n.ami_port, n.agi_port, n.app_sip_port, n.agi_metrics_port, n.reconciler_metrics_port]
    return ports


def _single(config: StackConfig) -> list[int]:
    return [config.sip_port, config.trunk_port, config.agi_port, config.ami_port, config.redis_port,
            config.api_port, config.postgres_port, config.app_sip_port, config.agi_metrics_port,
            config.reconciler_metrics_port, config.pushbridge_metrics_port]


def test_dev_and_test_stay_one_asterisk() -> None:
    for name in ("config/dev.toml", "config/test.toml"):
        config = load_config(name)
        assert (config.cluster_nodes, config.node, config.systemname) == (1, 0, "")
        assert nodes(config) == [config]
        assert "systemname =" not in asterisk_options_conf(config)
        assert "--systemname" not in stack.reconciler_argv(config)
        with pytest.raises(ValueError):
            node_config(config, 1)


@pytest.mark.parametrize("offset", ["0", "7", "9"])
def test_two_nodes_ports_are_distinct_and_clash_with_no_other_stack(offset: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KINLINE_PORT_OFFSET", offset)
    config = load_config("config/test-two-nodes.toml")
    one, two = nodes(config)
    assert (one.node, two.node, one.systemname, two.systemname) == (1, 2, "kinline-n1", "kinline-n2")
    assert (one.sip_port, two.sip_port) == (config.sip_port + 1, config.sip_port + 2)
    # node 1 keeps the AMI the API and the push bridge talk to
    assert (one.ami_port, one.app_sip_port) == (config.ami_port, config.app_sip_port)
    ports = _listening(config)
    assert len(ports) == len(set(ports))
    others = set()
    for other in range(10):
        monkeypatch.setenv("KINLINE_PORT_OFFSET", str(other))
        others |= set(_single(load_config("config/test.toml"))) | set(_single(load_config("config/dev.toml")))
    assert not set(ports) & others
    # the RTP range split between the nodes
    assert (one.rtp_start, two.rtp_end) == (config.rtp_start, config.rtp_end)
    assert one.rtp_end + 1 == two.rtp_start and one.rtp_end - one.rtp_start == two.rtp_end - two.rtp_start


def test_each_node_has_its_own_state_and_shares_the_secrets_and_recordings() -> None:
    config = load_config("config/test-two-nodes.toml")
    one, two = nodes(config)
    assert one.state == config.state / "node1" and two.state == config.state / "node2"
    assert stack.reconciler_argv(two)[stack.reconciler_argv(two).index("--cel-log") + 1].startswith(str(two.state))
    argv = stack.reconciler_argv(two)
    assert argv[argv.index("--systemname") + 1] == argv[argv.index("--node") + 1] == "kinline-n2"


def test_a_node_renders_its_own_ports_and_systemname() -> None:
    two = nodes(load_config("config/test-two-nodes.toml"))[1]
    files = render(replace(two, state=Path("/nonexistent")), SECRETS)
    assert files["asterisk_options.conf"].splitlines()[-1] == "systemname = kinline-n2"
    # the terminals' door check compares the local port: the node's, where Kamailio relays
    assert f"KINLINE_TERMINAL_PORT = {two.sip_port}\n" in files["globals.conf"]
    assert f"bind = {two.sip_host}:{two.sip_port}\n" in files["pjsip_transport.conf"]
    assert f"port = {two.ami_port}\n" in files["manager_general.conf"]
    assert files["rtp_ports.conf"] == f"rtpstart = {two.rtp_start}\nrtpend = {two.rtp_end}\n"
    assert f"KINLINE_AGI = agi://{two.host}:{two.agi_port}\n" in files["globals.conf"]


def test_the_apps_node_takes_the_other_nodes_relays_and_they_dial_it() -> None:
    """Apps register with node 1: it identifies node 2's relays by node 2's address and SIP
    port (never Kamailio's: the terminals come from there); node 2 dials node 1's SIP port and
    its AGI server asks node 1's AMI; one Asterisk has neither."""
    config = load_config("config/test-two-nodes.toml")
    one, two = nodes(config)
    first = render(replace(one, state=Path("/nonexistent")), SECRETS)["pjsip_nodes.conf"]
    second = render(replace(two, state=Path("/nonexistent")), SECRETS)["pjsip_nodes.conf"]
    assert "[kinline-node2]\ntype = endpoint\ncontext = kinline-from-node\n" in first
    assert f"match = {two.sip_host}:{two.sip_port}\n" in first
    assert f":{config.sip_port}\n" not in first  # Kamailio's port
    assert "type = aor" not in first and "kinline-node1" not in first
    assert f"[kinline-node1]\ntype = aor\ncontact = sip:{one.sip_host}:{one.sip_port}\n" in second
    assert "aors = kinline-node1\n" in second and "type = identify" not in second
    single = render(replace(load_config("config/test.toml"), state=Path("/nonexistent")), SECRETS)
    assert "type =" not in single["pjsip_nodes.conf"]
    argv = stack.agi_argv(two)
    assert argv[argv.index("--apps-node") + 1] == f"{one.host}:{one.ami_port},kinline-node1"
    assert one.ami_port == config.ami_port  # node 1 keeps the stack's AMI (the API's, the push bridge's)
    assert "--apps-node" not in stack.agi_argv(one) and "--apps-node" not in stack.agi_argv(config)


@pytest.mark.parametrize(("extra", "message"), [
    ("[cluster]\nnodes = 5\n", "1-4"),
    ("[cluster]\nnodes = \"2\"\n", "1-4"),
])
def test_bad_cluster_configs_are_refused(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_config(_write(tmp_path, extra))


def test_kamailio_dispatches_to_every_node_and_listens_on_the_terminals_port() -> None:
    config = load_config("config/test-two-nodes.toml")
    listed = kamailio_conf.dispatcher_list(config).splitlines()[1:]
    assert listed == [f"1 sip:127.0.0.1:{n.sip_port} 0 0 node={n.node}" for n in nodes(config)]
    cfg = kamailio_conf.render_cfg(config, Path("/x/dispatcher.list"))
    assert "{{" not in cfg
    assert f"listen=udp:127.0.0.1:{config.sip_port}\n" in cfg
    assert 'modparam("dispatcher", "list_file", "/x/dispatcher.list")' in cfg
    # probed every second, out after two unanswered probes: well within 10 s
    assert re.search(r'"ds_ping_interval", 1\)', cfg) and re.search(r'"ds_probing_threshold", 2\)', cfg)
    assert "record_route();" in cfg and 'ds_select_dst("1", "4")' in cfg
    with pytest.raises(ValueError, match="unknown field"):
        kamailio_conf.render_cfg(config, Path("/x"), template="listen={{nope}}")


def test_kamailio_takes_a_terminal_only_from_its_facility_s_subnets() -> None:
    terminals = [Terminal("t-open", "0" * 32, "en", "open"), Terminal("t-two", "0" * 32, "en", "two"),
                 Terminal("t-none", "0" * 32, "en", "none")]
    subnets = {"open": ("10.1.0.0/16",), "two": ("10.2.0.0/24", "192.0.2.8/29")}
    route = kamailio_conf.terminals_cfg(terminals, subnets)
    assert route.count("route[TERMINAL_SOURCE] {") == 1
    assert '\tif ($var(user) == "t-open") {\n\t\tif (is_in_subnet("$si", "10.1.0.0/16")) { return(1); }\n' in route
    assert ('if (is_in_subnet("$si", "10.2.0.0/24") || is_in_subnet("$si", "192.0.2.8/29")) { return(1); }'
            in route)
    # A facility with no subnets: its terminal is taken from nowhere (refused straight away).
    assert '\tif ($var(user) == "t-none") {\n\t\t$var(refused) = 1;\n\t\treturn(-1);\n\t}\n' in route
    assert route.endswith("\treturn(1);\n}\n")  # not a terminal's name: the node answers it
    # Without [terminal_subnets] (dev, test): every source is taken.
    assert "if ($var(user)" not in kamailio_conf.terminals_cfg(terminals, None)
    with pytest.raises(ValueError, match="cannot go in Kamailio's config"):
        kamailio_conf.terminals_cfg([Terminal('x"; exit; "', "0" * 32, "en", "open")], subnets)
    cfg = kamailio_conf.render_cfg(load_config("config/test-two-nodes.toml"), Path("/x/dispatcher.list"))
    assert 'include_file "/x/terminals.cfg"' in cfg and 'loadmodule "ipops.so"' in cfg


def test_behind_kamailio_a_node_takes_terminals_from_kamailio_s_address_alone(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "[cluster]\nnodes = 2\n[terminal_subnets]\nopen = [\"10.1.0.0/16\"]\n"))
    assert config.terminal_subnets == {"open": ("10.1.0.0/16",)}  # Kamailio's check
    for node in nodes(config):
        assert node.terminal_subnets is not None
        for facility in ("open", "any other"):
            assert node.terminal_subnets.get(facility) == (f"{config.sip_host}/32",)
        conf = terminals_conf([Terminal("t1", "0" * 32, "en", "open")], node.terminal_subnets)
        assert f"deny = 0.0.0.0/0.0.0.0\npermit = {config.sip_host}/32\n" in conf
    # No subnets for the stack: no ACL on the nodes either (dev, test).
    assert all(node.terminal_subnets is None for node in nodes(load_config(_write(tmp_path, "[cluster]\nnodes = 2\n"))))


def test_a_cluster_runs_each_node_s_services_with_a_guard_that_trusts_kamailio() -> None:
    config = load_config("config/test-two-nodes.toml")
    order = [(owner.node, name) for owner, name in stack.cluster_services(config)]
    assert order == [(0, "redis"), (0, "postgres"), (0, "history"),
                     (1, "agi"), (1, "asterisk"), (1, "guard"), (1, "reconciler"),
                     (2, "agi"), (2, "asterisk"), (2, "guard"), (2, "reconciler"),
                     (0, "kamailio"), (0, "api"), (0, "pushbridge")]
    for node in nodes(config):
        argv = stack.guard_argv(node)
        assert argv[argv.index("--trust") + 1] == config.sip_host  # Kamailio's address
        assert argv[argv.index("--sip-port") + 1] == str(node.sip_port)
        assert argv[argv.index("--app-sip-port") + 1] == str(node.app_sip_port)
    assert "--trust" not in stack.guard_argv(load_config("config/test.toml"))  # one Asterisk: no relay


class _Store:
    """The attempts and card locks of both nodes."""

    def __init__(self) -> None:
        mine = replace(PLAN, call_id="kinline-n1-1795000000.7-1", uniqueid="kinline-n1-1795000000.7")
        other = replace(PLAN, call_id="kinline-n2-1795000000.7-1", uniqueid="kinline-n2-1795000000.7")
        self.attempts = [OpenAttempt(p.call_id, plan_to_json(p), 0) for p in (mine, other)]
        self.locks = {"1001": "kinline-n1-1795000000.7", "1002": "kinline-n2-1795000000.9",
                      "1003": "kinline-n10-1795000000.1"}

    async def open_attempts(self) -> list[OpenAttempt]:
        return self.attempts

    async def card_locks(self) -> dict[str, str]:
        return self.locks


def test_a_node_s_reconciler_sees_only_its_own_calls_and_card_locks() -> None:
    attempts = NodeAttempts(_Store(), "kinline-n1")  # type: ignore[arg-type]
    assert [a.call_id for a in asyncio.run(attempts.open_attempts())] == ["kinline-n1-1795000000.7-1"]
    assert asyncio.run(attempts.card_locks()) == {"1001": "kinline-n1-1795000000.7"}


def test_terminals_are_applied_to_every_node_and_to_kamailio(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = load_config("config/test-two-nodes.toml")
    written: list[int] = []
    monkeypatch.setattr(stack, "load_secrets", lambda c: SECRETS)
    monkeypatch.setattr(stack, "write_generated", lambda c, s: written.append(c.node))
    monkeypatch.setattr(stack, "asterisk_cli", lambda c, command: "")
    cfg = tmp_path / "kamailio" / "terminals.cfg"
    monkeypatch.setattr(kamailio_conf, "folder", lambda c: cfg.parent)
    running = {"kamailio": 4242}
    monkeypatch.setattr(stack, "_pid", lambda c, name: running.get(name))
    restarts: list[str] = []
    monkeypatch.setattr(stack, "stop_service", lambda c, name: restarts.append(f"stop {name}"))
    monkeypatch.setattr(stack, "start_service", lambda c, name: restarts.append(f"start {name}"))
    monkeypatch.setattr(kamailio_conf, "load_terminals", lambda c: [Terminal("t1", "0" * 32, "en", "open")])
    config = replace(config, terminal_subnets={"open": ("10.1.0.0/16",)})
    said = stack.apply_terminals(config)
    assert said == ("node 1: Asterisk reloaded res_pjsip; node 2: Asterisk reloaded res_pjsip; "
                    "Kamailio restarted (the terminals' subnets)")
    assert written == [1, 2] and restarts == ["stop kamailio", "start kamailio"]
    assert '$var(user) == "t1"' in cfg.read_text()
    # The same terminals again: Kamailio's check unchanged, Kamailio left running.
    assert stack.apply_terminals(config) == "node 1: Asterisk reloaded res_pjsip; node 2: Asterisk reloaded res_pjsip"
    assert restarts == ["stop kamailio", "start kamailio"]
    assert not nodes(config)[0].clustered and nodes(nodes(config)[1]) == [nodes(config)[1]]
