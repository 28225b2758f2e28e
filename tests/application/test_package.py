"""``torsion package``: deployment files as .deb and .rpm packages, inspected and installed."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from _runner_helpers import ENV, Torsion, exchange, one_line, run_torsion

from torsion.application._package import debian_version

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is missing")


def deployment(tmp_path: Path, *extra: str, name: str = "echo.toml") -> Path:
    path = tmp_path / name
    made = run_torsion(
        "mktap", "echo", "--listen", "tcp:0:interface=127.0.0.1", *extra, "-o", str(path)
    )
    assert made.returncode == 0, made.stderr
    return path


def dpkg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["dpkg", *args], capture_output=True, text=True, check=False)


def dpkg_deb(*args: str) -> str:
    return subprocess.run(["dpkg-deb", *args], capture_output=True, text=True, check=True).stdout


def build(*args: str) -> Path:
    result = run_torsion("package", *args)
    assert result.returncode == 0, result.stderr
    return Path(one_line(result.stdout))


def test_a_deb_holds_the_file_and_a_unit_and_depends_on_torsion(tmp_path: Path) -> None:
    toml = deployment(tmp_path, "--shutdown-timeout", "20")
    deb = build("deb", str(toml), "-o", str(tmp_path / "out"), "--version", "2.3")
    assert deb == tmp_path / "out" / "torsion-echo_2.3_all.deb"
    info = dpkg_deb("-I", str(deb))
    assert "Package: torsion-echo\n" in info
    assert "Version: 2.3\n" in info
    assert "Architecture: all\n" in info
    assert "Depends: python3-torsion (>= 0.1.0~dev0)\n" in info
    assert "Description: torsion echo service (echo.toml)\n" in info
    listing = dpkg_deb("-c", str(deb))
    files = sorted(line.split()[-1] for line in listing.splitlines())
    assert "./etc/torsion/echo.toml" in files
    assert "./lib/systemd/system/torsion-echo.service" in files
    assert all("root/root" in line for line in listing.splitlines())
    assert dpkg_deb("-f", str(deb), "Package") == "torsion-echo\n"
    unpacked = tmp_path / "unpacked"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(unpacked)], check=True)
    assert (unpacked / "etc/torsion/echo.toml").read_text() == toml.read_text()
    assert (unpacked / "DEBIAN/conffiles").read_text() == "/etc/torsion/echo.toml\n"
    assert not (unpacked / "DEBIAN/postinst").exists()
    unit = (unpacked / "lib/systemd/system/torsion-echo.service").read_text()
    assert "Type=notify\n" in unit
    assert "ExecStart=/usr/bin/torsion -f /etc/torsion/echo.toml\n" in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID\n" in unit
    assert "TimeoutStopSec=35\n" in unit
    assert "WantedBy=multi-user.target\n" in unit


def _stub_torsion_package(tmp_path: Path) -> Path:
    """A package standing in for python3-torsion, to satisfy the dependency."""
    tree = tmp_path / "stub"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        "Package: python3-torsion\nVersion: 0.1.0~dev0\nArchitecture: all\n"
        "Maintainer: tests <tests@localhost>\nDescription: stands in for torsion\n"
    )
    out = tmp_path / "python3-torsion.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(tree), str(out)],
        check=True,
        capture_output=True,
    )
    return out


def test_the_deb_installs_into_a_root_once_torsion_is_there(tmp_path: Path) -> None:
    toml = deployment(tmp_path)
    deb = build("deb", str(toml), "-o", str(tmp_path))
    root = tmp_path / "root"
    (root / "var/lib/dpkg/info").mkdir(parents=True)
    (root / "var/lib/dpkg/updates").mkdir()
    (root / "var/lib/dpkg/status").touch()
    refused = dpkg(f"--root={root}", "-i", str(deb))
    assert refused.returncode != 0
    assert "depends on python3-torsion (>= 0.1.0~dev0)" in refused.stderr
    assert dpkg(f"--root={root}", "-i", str(_stub_torsion_package(tmp_path))).returncode == 0
    installed = dpkg(f"--root={root}", "--configure", "-a")
    assert installed.returncode == 0, installed.stderr
    status = dpkg(f"--root={root}", "-s", "torsion-echo")
    assert "Status: install ok installed" in status.stdout
    listed = dpkg(f"--root={root}", "-L", "torsion-echo").stdout.split()
    assert "/etc/torsion/echo.toml" in listed
    assert "/lib/systemd/system/torsion-echo.service" in listed
    # What was installed runs as the original command would.
    with Torsion("-f", str(root / "etc/torsion/echo.toml")) as torsion:
        assert exchange(torsion.port(), b"installed\n") == b"installed\n"
        assert torsion.stop() == 0
    removed = dpkg(f"--root={root}", "--purge", "torsion-echo")
    assert removed.returncode == 0, removed.stderr
    assert not (root / "etc/torsion/echo.toml").exists()


def test_a_daemon_deployment_is_a_forking_unit_and_options_are_honoured(
    tmp_path: Path,
) -> None:
    toml = deployment(
        tmp_path, "--daemon", "--pidfile", "/run/web.pid", "--logfile", "/var/log/web.log"
    )
    deb = build(
        "deb",
        str(toml),
        "-o",
        str(tmp_path),
        "--name",
        "web-echo",
        "--torsion-command",
        "/opt/torsion/bin/torsion",
        "--depends",
        "",
        "--maintainer",
        "Ops <ops@example.test>",
    )
    unpacked = tmp_path / "unpacked"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(unpacked)], check=True)
    unit = (unpacked / "lib/systemd/system/web-echo.service").read_text()
    assert "Type=forking\nPIDFile=/run/web.pid\n" in unit
    assert "ExecStart=/opt/torsion/bin/torsion -f /etc/torsion/echo.toml\n" in unit
    control = (unpacked / "DEBIAN/control").read_text()
    assert "Depends:" not in control
    assert "Maintainer: Ops <ops@example.test>\n" in control


@pytest.mark.skipif(shutil.which("rpmbuild") is None, reason="rpmbuild is missing (apt: rpm)")
def test_an_rpm_holds_the_same(tmp_path: Path) -> None:
    toml = deployment(tmp_path)
    rpm = build("rpm", str(toml), "-o", str(tmp_path), "--version", "1.2")
    assert rpm.name == "torsion-echo-1.2-1.noarch.rpm"

    def query(*args: str) -> list[str]:
        return subprocess.run(
            ["rpm", "-qp", *args, str(rpm)], capture_output=True, text=True, check=True
        ).stdout.splitlines()

    assert query("--list") == [
        "/etc/torsion/echo.toml",
        "/usr/lib/systemd/system/torsion-echo.service",
    ]
    assert query("--configfiles") == ["/etc/torsion/echo.toml"]
    assert "python3-torsion >= 0.1.0~dev0" in query("--requires")
    # Into a temporary root: refused without torsion, then installed anyway.
    root = tmp_path / "root"
    subprocess.run(["rpm", "--root", str(root), "--initdb"], check=True, capture_output=True)
    refused = subprocess.run(
        ["rpm", "--root", str(root), "-i", str(rpm)], capture_output=True, text=True
    )
    assert refused.returncode != 0
    assert "python3-torsion >= 0.1.0~dev0 is needed by torsion-echo-1.2-1.noarch" in (
        refused.stderr
    )
    subprocess.run(
        ["rpm", "--root", str(root), "-i", "--nodeps", str(rpm)], check=True, capture_output=True
    )
    assert (root / "etc/torsion/echo.toml").read_text() == toml.read_text()
    assert (root / "usr/lib/systemd/system/torsion-echo.service").exists()
    if shutil.which("rpm2archive") is not None:
        subprocess.run(["rpm2archive", str(rpm)], check=True, capture_output=True)
        with tarfile.open(f"{rpm}.tgz") as archive:
            member = archive.extractfile("./etc/torsion/echo.toml")
            assert member is not None
            assert member.read().decode() == toml.read_text()


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--name", "Bad Name"], 2, "torsion: --name: 'Bad Name' is not a package name"),
        (["--version", "v1"], 2, "torsion: --version: 'v1' is not a package version"),
    ],
)
def test_bad_package_options(tmp_path: Path, args: list[str], status: int, message: str) -> None:
    toml = deployment(tmp_path)
    result = run_torsion("package", "deb", str(toml), "-o", str(tmp_path), *args)
    assert result.returncode == status
    assert one_line(result.stderr).startswith(message)


def test_a_wrong_deployment_file_is_not_packaged(tmp_path: Path) -> None:
    toml = tmp_path / "wrong.toml"
    toml.write_text('plugin = "echo"\n[options]\nlisen = []\n')
    result = run_torsion("package", "deb", str(toml), "-o", str(tmp_path))
    assert result.returncode == 2
    assert "[options] unknown key 'lisen'" in one_line(result.stderr)
    assert list(tmp_path.glob("*.deb")) == []


def test_a_missing_build_tool_is_one_line(tmp_path: Path) -> None:
    toml = deployment(tmp_path)
    env = {**ENV, "PATH": str(tmp_path / "empty")}
    result = run_torsion("package", "rpm", str(toml), "-o", str(tmp_path), env=env)
    assert result.returncode == 1
    assert one_line(result.stderr) == (
        "torsion: rpmbuild is not installed (on Debian: apt-get install rpm)"
    )
    result = run_torsion("package", "deb", str(toml), "-o", str(tmp_path), env=env)
    assert one_line(result.stderr) == "torsion: dpkg-deb is not installed (it comes with dpkg)"


def test_debian_versions_order_pre_releases_first() -> None:
    assert debian_version("0.1.0.dev0") == "0.1.0~dev0"
    assert debian_version("1.2rc1") == "1.2~rc1"
    assert debian_version("2.0") == "2.0"
