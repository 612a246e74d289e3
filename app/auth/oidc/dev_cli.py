"""`aclaudit dev-idp`: a development OpenID Connect issuer for the demo. NOT FOR PRODUCTION."""

import json
from typing import Annotated

import typer

from app.auth.oidc.dev_idp import DevIssuer
from app.config import LOOPBACK_HOSTS

# The IdP groups of the demo people, and the scopes `ACLAUDIT_OIDC_SCOPE_MAP` gives them.
DEMO_SCOPE_MAP = {
    "security-staff": ["audit:read", "alerts:read"],
    "policy-admins": ["policy:write"],
    "aclaudit-admins": ["admin"],
}
DEMO_PEOPLE = {
    "security.lead": ["security-staff"],
    "policy.admin": ["policy-admins"],
}
HOURS = 3600


def parse_person(value: str) -> tuple[str, list[str]]:
    """``name`` or ``name=group,group``."""
    name, _, groups = value.partition("=")
    return name.strip(), [g.strip() for g in groups.split(",") if g.strip()]


def dev_idp(
    host: Annotated[str, typer.Option(help="Loopback interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8900,
    audience: Annotated[
        str, typer.Option(help="The tokens' audience: set ACLAUDIT_OIDC_AUDIENCE to it.")
    ] = "aclaudit",
    person: Annotated[
        list[str] | None,
        typer.Option(
            help="Sign in NAME (or NAME=group,group); repeatable. Default: a security lead, a "
            "policy admin and a demo employee whose records the demo read."
        ),
    ] = None,
    hours: Annotated[float, typer.Option(min=0.1, max=24, help="Token lifetime.")] = 8.0,
) -> None:
    """Serve a DEVELOPMENT OpenID Connect issuer on loopback (discovery and JWKS) and print
    signed tokens for demo people. NOT FOR PRODUCTION: it signs whatever it is asked to."""
    if host not in LOOPBACK_HOSTS:
        typer.secho("error: dev-idp serves on loopback only", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    if person:
        people = dict(parse_person(p) for p in person)
    else:
        from app.demo import an_employee_who_was_read

        employee = an_employee_who_was_read().removeprefix("user:")
        people = {**DEMO_PEOPLE, employee: []}
    issuer = DevIssuer(host, port)
    scope_map = json.dumps(DEMO_SCOPE_MAP)
    say = typer.echo
    typer.secho(
        "NOT FOR PRODUCTION: a development OpenID Connect issuer. It signs tokens for anyone "
        "who asks;\nits keys live only as long as this process. Point aclaudit at your "
        "company's IdP instead (docs/oidc.md).",
        fg=typer.colors.RED,
        err=True,
    )
    say(f"# issuer {issuer.url} (discovery: {issuer.url}/.well-known/openid-configuration)")
    say("# run aclaudit with:")
    say(f"export ACLAUDIT_OIDC_ISSUER={issuer.url}")
    say(f"export ACLAUDIT_OIDC_AUDIENCE={audience}")
    say(f"export ACLAUDIT_OIDC_SCOPE_MAP='{scope_map}'")
    say(f"# tokens, valid {hours:g} h while this issuer runs (Authorization: Bearer <token>):")
    for name, groups in people.items():
        token = issuer.token(name, audience=audience, groups=groups, lifetime=hours * HOURS)
        say(f"# user:{name.lower()} groups={groups or '(none: their own data only, /v1/me)'}")
        say(token)
    say("# serving; Ctrl-C to stop", err=True)
    try:
        issuer.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        issuer.stop()
