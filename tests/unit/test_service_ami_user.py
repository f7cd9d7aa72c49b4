"""The services' AMI user: only the events the reconciler, the guard and the push bridge follow."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from guard.events import FAILURE_EVENTS
from pushbridge.contacts import APP_AOR_PREFIX, FOLLOWED_EVENTS, REGISTRAR
from reconciler.main import BOOT_EVENT
from tools.asterisk_conf import SERVICE_EVENT_HEADERS, SERVICE_EVENTS, manager_users_conf
from tools.config import Secrets, load_config, load_secrets
from tools.stack import service_secrets

REPO = Path(__file__).resolve().parents[2]
SECRETS = Secrets(ami_user="kinline", ami_secret="s1", ami_originate_user="kinline-originate",
                  ami_originate_secret="s2", redis_password="r", pin_key="00" * 32,
                  ami_status_user="kinline-status", ami_status_secret="s3",
                  ami_events_user="kinline-events", ami_events_secret="s4")


def section(conf: str, name: str) -> str:
    return conf.split(f"[{name}]\n", 1)[1].split("\n[", 1)[0]


def test_every_event_a_service_reads_passes_the_filter() -> None:
    assert {BOOT_EVENT, *FOLLOWED_EVENTS, *FAILURE_EVENTS} == set(SERVICE_EVENTS)


def test_the_services_user_reads_only_those_events_and_writes_nothing() -> None:
    events = section(manager_users_conf("127.0.0.1", SECRETS), "kinline-events")
    assert re.search(r"^read = system,security,reporting$", events, re.M)
    assert re.search(r"^write =$", events, re.M)
    names = re.findall(r"^eventfilter\(action\(include\),name\((\w+)\)", events, re.M)
    assert names == list(SERVICE_EVENTS)
    # Two are narrowed to what the push bridge reads: the registrar's states, the apps' accounts.
    assert "eventfilter(action(include),name(TestEvent),header(State),method(starts_with)) = AOR_CONTACT_\n" in events
    assert "eventfilter(action(include),name(SuccessfulAuth),header(AccountID),method(starts_with)) = app-\n" in events
    assert "eventfilter(action(include),name(FullyBooted)) =\n" in events
    assert "permit = 127.0.0.1/255.255.255.255" in events


def test_the_narrowed_events_keep_what_the_push_bridge_reads() -> None:
    test_event, auth = SERVICE_EVENT_HEADERS["TestEvent"], SERVICE_EVENT_HEADERS["SuccessfulAuth"]
    assert test_event[0] == "State" and all(state.startswith(test_event[1]) for state in REGISTRAR)
    assert auth == ("AccountID", APP_AOR_PREFIX)


def test_the_tests_user_still_gets_every_event() -> None:
    users = manager_users_conf("127.0.0.1", SECRETS)
    assert "eventfilter" not in section(users, "kinline")


def test_the_services_log_in_as_the_services_user(tmp_path: Path) -> None:
    config = replace(load_config(REPO / "config" / "test.toml"), state=tmp_path / "state")
    env = service_secrets(config)  # the stack's services and compose's services.env
    secrets = load_secrets(config)
    assert (env["KINLINE_AMI_USER"], env["KINLINE_AMI_SECRET"]) == (secrets.ami_events_user, secrets.ami_events_secret)
    assert secrets.ami_events_user == "kinline-events" and secrets.ami_events_secret != secrets.ami_secret
