"""The Casbin model file is the model the service enforces: it refuses to start on any other, and
finds it when installed from a wheel."""

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from app.main import create_app
from app.policy.casbin_model import MODEL_PATH, ModelMismatch, model_differences
from tests.e2e.servers import ACLAUDIT, free_port

ROOT = Path(__file__).resolve().parents[2]
DENY_EFFECT = " && !some(where (p.eft == deny))"
PURPOSE_MATCH = ' && (p.purpose == "*" || r.purpose == p.purpose)'


def test_the_shipped_model_is_the_implemented_one_and_policies_links_to_it():
    assert model_differences(MODEL_PATH) == []
    assert (ROOT / "policies" / "model.conf").resolve() == MODEL_PATH


@pytest.fixture
def without_deny(tmp_path: Path) -> Path:
    text = MODEL_PATH.read_text()
    assert DENY_EFFECT in text
    edited = tmp_path / "model.conf"
    edited.write_text(text.replace(DENY_EFFECT, ""))
    return edited


def test_serve_refuses_a_model_without_the_deny_effect_and_names_it(tmp_path, without_deny):
    env = {
        **os.environ,
        "ACLAUDIT_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}",
        "ACLAUDIT_CASBIN_MODEL": str(without_deny),
    }
    done = subprocess.run(
        [ACLAUDIT, "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "[policy_effect] e is `some(where (p_eft == allow))`" in done.stderr
    assert "!some(where (p_eft == deny))" in done.stderr  # what it should be
    assert not (tmp_path / "a.db").exists()  # refused before touching the database


def test_serve_refuses_a_model_without_the_purpose_and_names_each_difference(tmp_path):
    text = MODEL_PATH.read_text()
    assert PURPOSE_MATCH in text
    edited = tmp_path / "model.conf"
    edited.write_text(
        text.replace(PURPOSE_MATCH, "")
        .replace("r = sub, obj, act, purpose, now", "r = sub, obj, act, now")
        .replace("p = sub, obj, act, purpose, eft", "p = sub, obj, act, eft")
    )
    env = {
        **os.environ,
        "ACLAUDIT_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}",
        "ACLAUDIT_CASBIN_MODEL": str(edited),
    }
    done = subprocess.run(
        [ACLAUDIT, "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "[request_definition] r is `sub, obj, act, now`" in done.stderr
    assert "[policy_definition] p is `sub, obj, act, eft, exp, id`" in done.stderr
    assert "[matchers] m is" in done.stderr
    assert "r_purpose == p_purpose" in done.stderr  # what the matcher should say
    assert not (tmp_path / "a.db").exists()


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (
            lambda t: t.replace("r = sub, obj, act, purpose, now", "r = sub, obj, act, now"),
            "[request_definition] r",
        ),
        (lambda t: t.replace(PURPOSE_MATCH, ""), "[matchers] m"),
        (lambda t: t.replace('p.purpose == "*" || ', ""), "[matchers] m"),
        (
            lambda t: t.replace("p = sub, obj, act, purpose, eft", "p = sub, obj, act, eft"),
            "[policy_definition] p",
        ),
        (lambda t: t.replace(" && isLive(p.exp, r.now)", ""), "[matchers] m"),
        (lambda t: t + "\n[role_definition]\ng2 = _, _\n", "[role_definition] g2 is not part"),
        (lambda t: "not a model", "pycasbin cannot load it"),
    ],
)
def test_the_app_refuses_any_other_model(tmp_path, edit, named):
    edited = tmp_path / "model.conf"
    edited.write_text(edit(MODEL_PATH.read_text()))
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'a.db'}", casbin_model=edited)
    with pytest.raises(ModelMismatch, match=named.replace("[", r"\[").replace("]", r"\]")):
        create_app(settings)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("m = g(", "m =   g("),
        ("r = sub, obj, act, purpose, now", "r = sub,obj,act,purpose,now"),
        ('(p.purpose == "*" || r.purpose', '( p.purpose=="*"||r.purpose'),
        ("r.act == p.act", "r.act==p.act"),
        ("g = _, _", "g = _,_"),
    ],
)
def test_comments_and_spacing_casbin_ignores_do_not_count(tmp_path, old, new):
    edited = tmp_path / "model.conf"
    text = MODEL_PATH.read_text()
    assert old in text
    edited.write_text("# mine\n" + text.replace(old, new))
    assert model_differences(edited) == []


@pytest.mark.parametrize("spacing", ["  ", "\t"])
def test_an_effect_casbin_cannot_run_is_refused_even_if_only_its_spacing_differs(tmp_path, spacing):
    edited = tmp_path / "model.conf"
    edited.write_text(MODEL_PATH.read_text().replace("allow)) &&", f"allow)){spacing}&&"))
    assert [d.split(" is ")[0] for d in model_differences(edited)] == ["[policy_effect] e"]


@pytest.mark.slow
def test_installed_from_a_wheel_the_service_finds_its_model(tmp_path):
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("aclaudit-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
    code = (
        "import app.policy.casbin_model as m; "
        "print(m.MODEL_PATH); print(m.model_differences(m.MODEL_PATH))"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    ran = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, cwd="/"
    )
    assert ran.returncode == 0, ran.stderr
    path, differences = ran.stdout.splitlines()
    assert path == str(tmp_path / "site" / "app" / "policy" / "model.conf")
    assert differences == "[]"


@pytest.mark.slow
def test_installed_from_a_wheel_the_service_migrates_and_serves_a_fresh_database(tmp_path):
    """The wheel alone (no repository, no alembic.ini): `aclaudit db upgrade`, then `serve`
    on a fresh SQLite file, ready and deciding. The wheel is installed into a scratch venv
    without its dependencies, which it takes from this environment's site-packages (a path
    line: this environment's own .pth files, the editable install among them, are not read)."""
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("aclaudit-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {"app/migrations/env.py", "app/migrations/versions/0022_purposes.py"} <= names
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = next(p for p in sys.path if p.endswith("site-packages"))
    (Path(site) / "zz_dependencies.pth").write_text(ours + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("ACLAUDIT_") and k != "PYTHONPATH"
    }
    env["ACLAUDIT_DATABASE_URL"] = f"sqlite:///{work / 'fresh.db'}"
    where = subprocess.run(
        [str(python), "-c", "import app; print(app.__file__)"],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(site), where  # the wheel's code, not the repository's
    aclaudit = str(venv / "bin" / "aclaudit")
    upgraded = subprocess.run(
        [aclaudit, "db", "upgrade"], env=env, cwd=work, capture_output=True, text=True, timeout=120
    )
    assert upgraded.returncode == 0, upgraded.stderr
    port = free_port()
    server = subprocess.Popen(
        [aclaudit, "serve", "--port", str(port)],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert ready is not None and ready.status_code == 200, server.poll()
    finally:
        server.terminate()
        _out, err = server.communicate(timeout=30)
    assert "not the model aclaudit enforces" not in err
