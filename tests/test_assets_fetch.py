"""`dre assets fetch` against a file server on 127.0.0.1: success, resume, errors, proxies, ownership."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from dre.assets.catalog import FAN_DIR, LANDMARK_FILE, TEMPLATE_FILE
from dre.assets.config import FetchConfig
from dre.assets.fetch import run
from dre.assets.http import PART_SUFFIX
from dre.assets.placement import MANIFEST, read_manifest
from dre.cli import main
from dre.errors import DreError
from tests._asset_archives import fan_weights, synthetic_target
from tests._loopback import Behaviour, closed_port_url, proxy, serve

S3FD = "s3fd-619a316812.pth"
FAN4 = "2DFAN4-11f355bf06.pth.tar"


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's own proxy settings must not leak into these tests (the proxy test sets its own)."""
    for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(k, raising=False)


@pytest.fixture(scope="module")
def served(synthetic_assets: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """URL path -> bytes of the four files, as a mirror holds them (synthetic stand-ins)."""
    blobs = fan_weights(tmp_path_factory.mktemp("fan"))
    return {
        f"/{S3FD}": blobs[S3FD],
        f"/{FAN4}": blobs[FAN4],
        f"/{TEMPLATE_FILE}": (synthetic_assets / TEMPLATE_FILE).read_bytes(),
        f"/{LANDMARK_FILE}": (synthetic_assets / LANDMARK_FILE).read_bytes(),
    }


def _cfg(assets: Path, base: str, *what: str, **kw: object) -> FetchConfig:
    return FetchConfig(assets=assets, mirror=base, what=what or ("all",), **kw)  # type: ignore[arg-type]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if PART_SUFFIX in p.name or p.name.endswith(".tmp"))


def test_fetch_all_places_validates_and_records(tmp_path: Path, served: dict[str, bytes]) -> None:
    assets = synthetic_target(tmp_path / "assets")
    b = Behaviour(files=dict(served))
    log = io.StringIO()
    with serve(b) as base:
        got = run(_cfg(assets, base), stream=log)
    assert [o.action for o in got] == ["downloaded"] * 4
    assert (assets / FAN_DIR / S3FD).read_bytes() == served[f"/{S3FD}"]
    assert (assets / FAN_DIR / FAN4).read_bytes() == served[f"/{FAN4}"]
    assert (assets / TEMPLATE_FILE).read_bytes() == served[f"/{TEMPLATE_FILE}"]
    assert (assets / LANDMARK_FILE).read_bytes() == served[f"/{LANDMARK_FILE}"]
    assert set(read_manifest(assets)) == {f"{FAN_DIR}/{S3FD}", f"{FAN_DIR}/{FAN4}", TEMPLATE_FILE, LANDMARK_FILE}
    assert _leftovers(assets) == []
    assert f"{FAN_DIR}/{FAN4}:" in log.getvalue() and "MiB" in log.getvalue()  # progress lines on the stream
    # a second run downloads nothing: every file is valid already
    with serve(b) as base:
        n = len(b.requests)
        again = run(_cfg(assets, base), stream=io.StringIO())
    assert [o.action for o in again] == ["present"] * 4 and len(b.requests) == n


def test_resume_after_connection_cut_mid_file(tmp_path: Path, served: dict[str, bytes]) -> None:
    assets = synthetic_target(tmp_path / "assets")
    path = f"/{TEMPLATE_FILE}"
    half = len(served[path]) // 2
    b = Behaviour(files=dict(served), cut={path: half})
    with serve(b) as base:
        run(_cfg(assets, base, "deca-data", retries=2), stream=io.StringIO())
    asks = [h for p, h in b.requests if p == path]
    assert len(asks) == 2 and "Range" not in asks[0]
    assert asks[1]["Range"] == f"bytes={half}-" and asks[1]["If-Range"].startswith('"')  # resumed, not restarted
    assert (assets / TEMPLATE_FILE).read_bytes() == served[path]
    assert _leftovers(assets) == []


def test_resume_across_runs_and_restart_when_file_changed(tmp_path: Path, served: dict[str, bytes]) -> None:
    assets = synthetic_target(tmp_path / "assets")
    path = f"/{TEMPLATE_FILE}"
    b = Behaviour(files=dict(served), cut={path: 1000})
    with serve(b) as base:
        with pytest.raises(DreError) as ei:
            run(_cfg(assets, base, "deca-data", retries=0), stream=io.StringIO())
        msg = str(ei.value)
        assert "1000 bytes received are kept" in msg and "run the same command again to resume" in msg
        assert not (assets / TEMPLATE_FILE).exists() and (assets / f".{TEMPLATE_FILE}{PART_SUFFIX}").stat().st_size == 1000
        run(_cfg(assets, base, "deca-data", retries=0), stream=io.StringIO())
    assert [h.get("Range") for p, h in b.requests if p == path] == [None, "bytes=1000-"]
    assert (assets / TEMPLATE_FILE).read_bytes() == served[path]
    # the remote file changed between runs: If-Range no longer matches, the server sends it whole
    (assets / TEMPLATE_FILE).unlink()
    b2 = Behaviour(files=dict(served), cut={path: 1000})
    with serve(b2) as base:
        with pytest.raises(DreError):
            run(_cfg(assets, base, "deca-data", retries=0), stream=io.StringIO())
    new = served[path].replace(b"\nv ", b"\nv  ", 1)  # same OBJ, other bytes (another ETag)
    b3 = Behaviour(files={**served, path: new})
    with serve(b3) as base:
        run(_cfg(assets, base, "deca-data", retries=0), stream=io.StringIO())
    assert (assets / TEMPLATE_FILE).read_bytes() == new


def test_404_names_url_and_leaves_nothing(tmp_path: Path, served: dict[str, bytes]) -> None:
    assets = synthetic_target(tmp_path / "assets")
    files = {k: v for k, v in served.items() if k != f"/{FAN4}"}
    with serve(Behaviour(files=files)) as base:
        with pytest.raises(DreError) as ei:
            run(_cfg(assets, base, "fan"), stream=io.StringIO())
    msg = str(ei.value)
    assert f"{base}/{FAN4}: HTTP 404" in msg and "dre assets add" in msg and "1 of 2 file(s) not fetched" in msg
    assert (assets / FAN_DIR / S3FD).is_file() and not (assets / FAN_DIR / FAN4).exists()  # the other one arrived
    assert _leftovers(assets) == []


def test_timeout_reports_stall_and_keeps_partial(tmp_path: Path, served: dict[str, bytes]) -> None:
    assets = synthetic_target(tmp_path / "assets")
    path = f"/{LANDMARK_FILE}"
    b = Behaviour(files=dict(served), stall={path: 3.0})
    t0 = time.monotonic()
    with serve(b) as base:
        with pytest.raises(DreError) as ei:
            run(FetchConfig(assets=assets, mirror=base, what=("deca-data",), timeout=0.3, retries=0),
                stream=io.StringIO())  # fmt: skip
    assert time.monotonic() - t0 < 2.5
    msg = str(ei.value)
    assert f"{base}{path}" in msg and "stalled for 0.3 s" in msg and "run the same command again to resume" in msg
    assert (assets / TEMPLATE_FILE).is_file() and not (assets / LANDMARK_FILE).exists()


def test_corrupt_download_is_refused_and_removed(tmp_path: Path, served: dict[str, bytes]) -> None:
    assets = synthetic_target(tmp_path / "assets")
    html = b"<!DOCTYPE html><html><body>Please sign in</body></html>" * 20
    with serve(Behaviour(files={**served, f"/{S3FD}": html})) as base:
        with pytest.raises(DreError) as ei:
            run(_cfg(assets, base, "fan"), stream=io.StringIO())
    msg = str(ei.value)
    assert f"{base}/{S3FD}: the downloaded file is not a valid {S3FD}" in msg and "HTML page" in msg
    assert "it was removed" in msg
    assert not (assets / FAN_DIR / S3FD).exists() and _leftovers(assets) == []
    assert S3FD not in str(read_manifest(assets))


def test_valid_existing_file_untouched_and_foreign_invalid_file_refused(
    tmp_path: Path, served: dict[str, bytes]
) -> None:
    assets = synthetic_target(tmp_path / "assets")
    mine = fan_weights(tmp_path / "mine")  # valid weights the user placed by hand (same kind, own bytes)
    dest = assets / FAN_DIR / S3FD
    dest.parent.mkdir(parents=True)
    dest.write_bytes(mine[S3FD] + b"")
    os.utime(dest, (1_000_000, 1_000_000))
    foreign = assets / TEMPLATE_FILE
    foreign.write_text("not an obj\n")
    b = Behaviour(files=dict(served))
    with serve(b) as base:
        with pytest.raises(DreError) as ei:
            run(_cfg(assets, base), stream=io.StringIO())
    assert dest.stat().st_mtime == 1_000_000 and dest.read_bytes() == mine[S3FD]
    assert all(p != f"/{S3FD}" for p, _ in b.requests)  # not even downloaded
    msg = str(ei.value)
    assert str(foreign) in msg and "dre did not place it" in msg and "left untouched" in msg
    assert foreign.read_text() == "not an obj\n" and all(p != f"/{TEMPLATE_FILE}" for p, _ in b.requests)
    assert (assets / LANDMARK_FILE).is_file() and (assets / FAN_DIR / FAN4).is_file()


def _official_size_obj() -> bytes:
    """An OBJ with the official template's counts (5023 v, 9976 f): valid without the SYNTHETIC marker."""
    from dre.face3d.flame import N_FACES, N_VERTICES

    lines = [f"v {i * 1e-4:.4f} 0 0" for i in range(N_VERTICES)] + ["vt 0.5 0.5"]
    lines += [f"f {i % N_VERTICES + 1}/1 {(i + 1) % N_VERTICES + 1}/1 {(i + 2) % N_VERTICES + 1}/1" for i in range(N_FACES)]
    return ("\n".join(lines) + "\n").encode()


def test_our_own_file_that_became_invalid_is_replaced(tmp_path: Path, served: dict[str, bytes]) -> None:
    """A file fetch placed that no longer validates (the folder lost its SYNTHETIC marker, so the synthetic
    template's sizes are refused) is fetch's own: the next fetch replaces it; the landmark file stays."""
    assets = synthetic_target(tmp_path / "assets")
    with serve(Behaviour(files=dict(served))) as base:
        run(_cfg(assets, base, "deca-data"), stream=io.StringIO())
    (assets / "SYNTHETIC").unlink()
    official = _official_size_obj()
    with serve(Behaviour(files={**served, f"/{TEMPLATE_FILE}": official})) as base:
        got = {o.rel: o.action for o in run(_cfg(assets, base, "deca-data"), stream=io.StringIO())}
    assert got == {TEMPLATE_FILE: "downloaded", LANDMARK_FILE: "present"}
    assert (assets / TEMPLATE_FILE).read_bytes() == official


def test_missing_fan_message_names_the_fetch_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dre.align.fan import check_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "my assets" / "torch"))  # what the align rule sets
    with pytest.raises(DreError) as ei:
        check_weights()
    msg = str(ei.value)
    assert f"dre assets fetch fan --assets '{tmp_path / 'my assets'}'" in msg
    assert "--backend mediapipe works offline" in msg and "dre assets add" in msg


def test_proxy_variables_are_respected(tmp_path: Path, served: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    b = Behaviour(files=dict(served))
    with serve(b) as base, proxy() as (proxy_url, seen):
        monkeypatch.setenv("http_proxy", proxy_url)
        run(_cfg(synthetic_target(tmp_path / "a1"), base, "fan"), stream=io.StringIO())
        assert seen == [f"{base}/{S3FD}", f"{base}/{FAN4}"]
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        run(_cfg(synthetic_target(tmp_path / "a2"), base, "fan"), stream=io.StringIO())
        assert len(seen) == 2 and len(b.requests) == 4  # direct this time
        dry = io.StringIO()
        monkeypatch.delenv("no_proxy")
        run(_cfg(tmp_path / "a3", base, "fan", dry_run=True), stream=dry)
    assert f"via proxy {proxy_url}" in dry.getvalue() and not (tmp_path / "a3").exists()


def test_offline_error_names_url_and_what_to_do(tmp_path: Path) -> None:
    base = closed_port_url()
    with pytest.raises(DreError) as ei:
        run(_cfg(tmp_path / "assets", base, "fan"), stream=io.StringIO())
    msg = str(ei.value)
    assert f"cannot reach {base}/{S3FD}" in msg and f"download {base}/{FAN4} on a machine with network access" in msg
    assert "dre assets add" in msg and "https_proxy" in msg
    assert _leftovers(tmp_path / "assets") == [] and not (tmp_path / "assets" / FAN_DIR / S3FD).exists()


def test_dry_run_lists_pinned_urls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["assets", "fetch", "--assets", str(tmp_path / "a"), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth (direct)" in err
    assert "raw.githubusercontent.com/yfeng95/DECA/" in err and "landmark_embedding.npy" in err
    assert not (tmp_path / "a").exists()
    assert main(["assets", "fetch", "nonsense", "--assets", str(tmp_path / "a")]) == 2


def test_partial_file_we_did_not_write_is_left_alone(tmp_path: Path, served: dict[str, bytes]) -> None:
    assets = synthetic_target(tmp_path / "assets")
    stray = assets / f".{TEMPLATE_FILE}{PART_SUFFIX}"  # a partial file without our sidecar
    stray.write_bytes(b"someone else's bytes")
    with serve(Behaviour(files=dict(served))) as base:
        with pytest.raises(DreError) as ei:
            run(_cfg(assets, base, "deca-data"), stream=io.StringIO())
    assert str(stray) in str(ei.value) and "not written by dre" in str(ei.value)
    assert stray.read_bytes() == b"someone else's bytes" and not (assets / TEMPLATE_FILE).exists()
    assert (assets / LANDMARK_FILE).is_file()


def test_two_runs_on_one_folder_do_not_interleave(tmp_path: Path, served: dict[str, bytes]) -> None:
    from dre.assets.placement import folder_lock

    assets = synthetic_target(tmp_path / "assets")
    with folder_lock(assets, "x"), serve(Behaviour(files=dict(served))) as base:
        with pytest.raises(DreError) as ei:
            run(_cfg(assets, base, "fan"), stream=io.StringIO())
    assert "another `dre assets fetch` or `dre assets add` is working on this folder" in str(ei.value)
    assert not (assets / FAN_DIR).exists()


def test_oversized_answer_is_refused(tmp_path: Path) -> None:
    from dre.assets.http import download

    with serve(Behaviour(files={"/big": b"x" * 300_000})) as base:
        with pytest.raises(DreError) as ei:
            download(f"{base}/big", tmp_path / "big", max_bytes=100_000, stream=io.StringIO())
    assert "above the 100000-byte cap" in str(ei.value) and list(tmp_path.iterdir()) == []
