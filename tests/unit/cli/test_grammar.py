"""kubectl's argument grammar, as a table: KIND NAME and KIND/NAME, names before or after options, and an
argument error that shows the command's own usage."""

from __future__ import annotations

import pytest

from orchestrator.cli.main import build_parser, parse_command_line
from orchestrator.cli.resources import one_object, type_names
from orchestrator.core.errors import InputError


@pytest.mark.parametrize(("first", "names", "wanted"), [
    ("pods", [], [("pods", [])]),
    ("deploy", ["web", "api"], [("deploy", ["web", "api"])]),
    ("deploy/web", [], [("deploy", ["web"])]),
    ("deploy/web", ["svc/web", "deploy/api"], [("deploy", ["web", "api"]), ("svc", ["web"])]),
    ("po,svc", [], [("po,svc", [])]),
])
def test_type_names_reads_both_forms(first, names, wanted):
    assert type_names(first, names, "get") == wanted


@pytest.mark.parametrize(("first", "names", "message"), [
    ("deploy", ["svc/web"], "there is no need to specify a resource type as a separate argument"),
    ("deploy/", [], "'deploy/' is not KIND/NAME"),
    ("a/b/c", [], "'a/b/c' is not KIND/NAME"),
])
def test_type_names_refuses_what_kubectl_refuses(first, names, message):
    with pytest.raises(InputError, match=message):
        type_names(first, names, "get")


@pytest.mark.parametrize(("kind", "name", "wanted"), [
    ("deployment", "web", ("deployment", "web")), ("deployment/web", None, ("deployment", "web")),
])
def test_one_object_takes_either_form(kind, name, wanted):
    assert one_object(kind, name, "scale") == wanted


@pytest.mark.parametrize(("kind", "name"), [("deployment", None), ("deployment/web", "service/web")])
def test_one_object_wants_exactly_one(kind, name):
    with pytest.raises(InputError, match="name one object"):
        one_object(kind, name, "scale")


@pytest.mark.parametrize(("argv", "field", "value"), [
    (["get", "ep", "-n", "kube-system", "kube-dns"], "names", ["kube-dns"]),
    (["get", "svc", "-o", "wide", "web"], "names", ["web"]),
    (["get", "-A", "pods"], "resource", "pods"),
    (["scale", "deployment/web", "--replicas=4"], "replicas", 4),
    (["scale", "--replicas", "4", "deploy", "web"], "name", "web"),
    (["apply", "-f", "deny.yaml", "-n", "other"], "namespace", "other"),
    (["logs", "-n", "shop", "deploy/web"], "pod", "deploy/web"),
])
def test_names_and_options_come_in_any_order(argv, field, value):
    args = parse_command_line(build_parser(), argv)
    assert getattr(args, field) == value and args.command_name == argv[0]


def test_an_argument_error_shows_the_commands_own_usage(capsys):
    with pytest.raises(SystemExit):
        parse_command_line(build_parser(), ["scale", "deploy/web"])
    err = capsys.readouterr().err
    assert err.startswith("usage: lab scale") and "--replicas" in err.splitlines()[-1]
