"""``torsion package deb|rpm FILE.toml``: a deployment file as an installable package.

The package holds two files:

- ``/etc/torsion/NAME.toml``, the deployment file (a configuration file:
  an upgrade keeps the operator's edits);
- the systemd unit ``PACKAGE.service`` (``/lib/systemd/system`` for Debian,
  ``/usr/lib/systemd/system`` for RPM), which runs ``torsion -f`` on it as a
  ``Type=notify`` service (``Type=forking`` if the file says
  ``daemon = true``), reloads with SIGHUP and allows the file's
  ``shutdown-timeout`` to stop;

and depends on torsion: by default on the ``python3-torsion`` package at
the version installed here or later, with ``/usr/bin/torsion`` in the unit.
A torsion installed some other way (a virtual environment) is named with
``--torsion-command`` and ``--depends``. The package has no maintainer
scripts, so it installs into any root (``dpkg --root``); enable the service
with ``systemctl enable --now PACKAGE``.

The deployment file is checked (as ``torsion -f`` would) before anything is
built. ``.deb`` files are built with ``dpkg-deb``, ``.rpm`` files with
``rpmbuild``; either missing is a one-line error.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass

import torsion
from torsion.application._deployment import read_deployment
from torsion.application._errors import RunnerError, UsageError
from torsion.application._plugins import Plugin

__all__ = ["PackageSpec", "build_package", "systemd_unit"]

_DEB_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_VERSION = re.compile(r"^[0-9][A-Za-z0-9.+~]*$")


def debian_version(version: str) -> str:
    """A Python version in Debian's ordering: ``0.1.0.dev0`` becomes ``0.1.0~dev0``."""
    return re.sub(r"\.?(dev|a|b|rc)(\d*)", r"~\1\2", version)


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageSpec:
    """What goes into a package.

    Attributes:
        name: The package's name (``torsion-echo``).
        version: Its version.
        deployment_name: The deployment file's name under /etc/torsion.
        deployment: The deployment file's text.
        plugin: The plugin it runs.
        command: The ``torsion`` command the unit runs.
        depends: The package it depends on (Debian syntax), or "" for none.
        daemon: Whether the file asks for ``--daemon`` (a forking service).
        pidfile: The pidfile the file names, if any.
        stop_timeout: Seconds systemd allows for stopping.
        maintainer: Who to write to about the package.
    """

    name: str
    version: str
    deployment_name: str
    deployment: str
    plugin: str
    command: str
    depends: str
    daemon: bool
    pidfile: str | None
    stop_timeout: float
    maintainer: str

    @property
    def config_path(self) -> str:
        """Where the deployment file is installed."""
        return f"/etc/torsion/{self.deployment_name}"

    @property
    def description(self) -> str:
        """One line on what the package runs."""
        return f"torsion {self.plugin} service ({self.deployment_name})"


def systemd_unit(spec: PackageSpec) -> str:
    """The systemd unit that runs the deployment file."""
    service = [
        "[Service]",
        f"ExecStart={spec.command} -f {spec.config_path}",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        f"TimeoutStopSec={spec.stop_timeout:g}",
    ]
    if spec.daemon:
        service.insert(1, "Type=forking")
        if spec.pidfile:
            service.insert(2, f"PIDFile={spec.pidfile}")
    else:
        # torsion sends READY=1 once it serves, and STOPPING=1, RELOADING=1.
        service.insert(1, "Type=notify")
    lines = [
        "[Unit]",
        f"Description={spec.description}",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        *service,
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def _spec(
    path: str,
    plugins: Mapping[str, Plugin],
    *,
    name: str | None,
    version: str,
    command: str,
    depends: str | None,
    maintainer: str | None,
) -> PackageSpec:
    deployment = read_deployment(path, plugins)
    stem = os.path.splitext(os.path.basename(path))[0]
    package = name or f"torsion-{stem.lower().replace('_', '-')}"
    if not _DEB_NAME.match(package):
        raise UsageError(
            f"--name: {package!r} is not a package name (lower-case letters, digits, + - .)"
        )
    if not _VERSION.match(version):
        raise UsageError(f"--version: {version!r} is not a package version such as 1.0")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    runner = deployment.runner
    if depends is None:
        depends = f"python3-torsion (>= {debian_version(torsion.__version__)})"
    return PackageSpec(
        name=package,
        version=version,
        deployment_name=f"{stem}.toml",
        deployment=text,
        plugin=deployment.plugin.name,
        command=command,
        depends=depends,
        daemon=bool(runner.get("daemon", False)),
        pidfile=runner.get("pidfile"),
        stop_timeout=float(runner.get("shutdown_timeout", 30.0)) + 15,
        maintainer=maintainer or f"{_user()} <{_user()}@{_host()}>",
    )


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return "root"


def _host() -> str:
    return os.uname().nodename or "localhost"


def _write(path: str, text: str, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, mode)


def _run(argv: list[str], what: str) -> None:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise RunnerError(f"cannot run {argv[0]}: {exc.strerror}") from exc
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise RunnerError(f"{what} failed: {detail[-1] if detail else result.returncode}")


def build_deb(spec: PackageSpec, output_dir: str) -> str:
    """Build ``NAME_VERSION_all.deb`` in ``output_dir``; return its path.

    Raises:
        RunnerError: dpkg-deb is missing or fails.
    """
    dpkg_deb = shutil.which("dpkg-deb")
    if dpkg_deb is None:
        raise RunnerError("dpkg-deb is not installed (it comes with dpkg)")
    with tempfile.TemporaryDirectory(prefix="torsion-deb-") as tree:
        os.chmod(tree, 0o755)
        _write(os.path.join(tree, spec.config_path.lstrip("/")), spec.deployment)
        unit = os.path.join(tree, "lib/systemd/system", f"{spec.name}.service")
        _write(unit, systemd_unit(spec))
        control = [
            f"Package: {spec.name}",
            f"Version: {spec.version}",
            "Architecture: all",
            f"Maintainer: {spec.maintainer}",
            *([f"Depends: {spec.depends}"] if spec.depends else []),
            "Section: net",
            "Priority: optional",
            f"Description: {spec.description}",
            f" Runs '{spec.command} -f {spec.config_path}' as the systemd service",
            f" {spec.name}.service. Enable it with: systemctl enable --now {spec.name}",
        ]
        _write(os.path.join(tree, "DEBIAN", "control"), "\n".join(control) + "\n")
        _write(os.path.join(tree, "DEBIAN", "conffiles"), spec.config_path + "\n")
        os.makedirs(output_dir, exist_ok=True)
        out = os.path.join(output_dir, f"{spec.name}_{spec.version}_all.deb")
        _run([dpkg_deb, "--root-owner-group", "--build", tree, out], "dpkg-deb")
    return out


def build_rpm(spec: PackageSpec, output_dir: str) -> str:
    """Build ``NAME-VERSION-1.noarch.rpm`` in ``output_dir``; return its path.

    Raises:
        RunnerError: rpmbuild is missing or fails.
    """
    rpmbuild = shutil.which("rpmbuild")
    if rpmbuild is None:
        raise RunnerError("rpmbuild is not installed (on Debian: apt-get install rpm)")
    unit_dir = "/usr/lib/systemd/system"
    requires = _rpm_requires(spec.depends)
    with tempfile.TemporaryDirectory(prefix="torsion-rpm-") as top:
        sources = os.path.join(top, "SOURCES")
        _write(os.path.join(sources, spec.deployment_name), spec.deployment)
        _write(os.path.join(sources, f"{spec.name}.service"), systemd_unit(spec))
        spec_text = "\n".join(
            [
                f"Name: {spec.name}",
                f"Version: {spec.version.replace('-', '_')}",
                "Release: 1",
                f"Summary: {spec.description}",
                "License: Unspecified",
                "BuildArch: noarch",
                f"Source0: {spec.deployment_name}",
                f"Source1: {spec.name}.service",
                *([f"Requires: {requires}"] if requires else []),
                "",
                "%description",
                f"Runs '{spec.command} -f {spec.config_path}' as the systemd service",
                f"{spec.name}.service. Enable it with: systemctl enable --now {spec.name}",
                "",
                "%install",
                "mkdir -p %{buildroot}/etc/torsion %{buildroot}" + unit_dir,
                "install -m 0644 %{SOURCE0} %{buildroot}" + spec.config_path,
                "install -m 0644 %{SOURCE1} %{buildroot}" + f"{unit_dir}/{spec.name}.service",
                "",
                "%files",
                f"%config(noreplace) {spec.config_path}",
                f"{unit_dir}/{spec.name}.service",
                "",
            ]
        )
        spec_path = os.path.join(top, "SPECS", f"{spec.name}.spec")
        _write(spec_path, spec_text)
        _run([rpmbuild, "-bb", "--quiet", "--define", f"_topdir {top}", spec_path], "rpmbuild")
        built = [
            os.path.join(root, file)
            for root, _, files in os.walk(os.path.join(top, "RPMS"))
            for file in files
            if file.endswith(".rpm")
        ]
        if len(built) != 1:
            raise RunnerError(f"rpmbuild made {len(built)} packages, not one")
        os.makedirs(output_dir, exist_ok=True)
        out = os.path.join(output_dir, os.path.basename(built[0]))
        shutil.copyfile(built[0], out)
    return out


def _rpm_requires(depends: str) -> str:
    """A Debian dependency (``pkg (>= 1.0)``) in RPM's words (``pkg >= 1.0``)."""
    return re.sub(r"\s*\((>=|<=|=|>>|<<)\s*([^)]*)\)", _rpm_operator, depends)


def _rpm_operator(match: re.Match[str]) -> str:
    operator = {">>": ">", "<<": "<"}.get(match.group(1), match.group(1))
    return f" {operator} {match.group(2).strip()}"


def build_package(
    kind: str,
    path: str,
    plugins: Mapping[str, Plugin],
    *,
    output_dir: str = ".",
    name: str | None = None,
    version: str = "1.0",
    command: str = "/usr/bin/torsion",
    depends: str | None = None,
    maintainer: str | None = None,
) -> str:
    """Build a ``kind`` ("deb" or "rpm") package of the deployment file at ``path``.

    Returns:
        The package's path.

    Raises:
        UsageError: The deployment file, name or version is wrong.
        RunnerError: The build tool is missing or fails.
    """
    spec = _spec(
        path,
        plugins,
        name=name,
        version=version,
        command=command,
        depends=depends,
        maintainer=maintainer,
    )
    if kind == "deb":
        return build_deb(spec, output_dir)
    if kind == "rpm":
        return build_rpm(spec, output_dir)
    raise UsageError(f"no package kind {kind!r} (deb or rpm)")
