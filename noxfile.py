"""Development sessions: `nox` runs tests, lint, typing and docs; `nox -s bench` is opt-in."""

import nox

nox.options.sessions = ["tests", "lint", "typing", "docs"]
nox.options.error_on_external_run = True
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[tests]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install(".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typing(session: nox.Session) -> None:
    session.install("-e", ".[typing]")
    session.run("mypy")
    # pyright's --verifytypes needs the package installed non-editable to see it as a consumer.
    session.install(".", "--force-reinstall", "--no-deps")
    session.run("pyright", "--verifytypes", "aioqwenimage", "--ignoreexternal")


@nox.session
def docs(session: nox.Session) -> None:
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    session.install("-e", ".[bench]")
    session.run("python", "-m", "benchmarks", *(session.posargs or ["all"]))
