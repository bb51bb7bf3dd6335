"""``pretrained=True`` end to end, without network: a Hub-compatible server and a plain file server on 127.0.0.1,
started here, serve small files in each layout; huggingface_hub, torch.hub and our loader do the rest.

The Hub server speaks what ``hf_hub_download`` needs (``HEAD``/``GET`` of ``/{repo}/resolve/{revision}/{file}`` with
``X-Repo-Commit``, ``ETag`` = the file's SHA-256 as the Hub sends for Git LFS files, ``Content-Length``, ``Range``);
the zoo entries under test are real entries with a tiny architecture and their sources pointed at these servers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit

import huggingface_hub.constants
import pytest
import torch

import uniformer
from uniformer.labels import load_foreign_labels, load_labels
from uniformer.models.download import ChecksumError, fetch_release
from uniformer.models.pose import build_pose_model
from uniformer.models.zoo import catalog
from uniformer.models.zoo.schema import Release
from uniformer.models.zoo.sources import DriveFile, HubFile, Source, UrlFile, gdown_installed

TINY = dict(depth=(1, 1, 1, 1), embed_dim=(16, 32, 48, 64), head_dim=16)
COMMIT = "1" * 40


class FileServer:
    """Serves ``files`` (URL path -> bytes) on 127.0.0.1; ``hub=True`` adds the Hub's headers. Every request is
    logged as (method, path, Range header); a path in ``truncate_once`` gets half its body on the first GET, then
    the connection closes."""

    def __init__(self, hub: bool) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.truncate_once: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                path = urlsplit(self.path).path
                server.requests.append((self.command, path, self.headers.get("Range")))
                data = server.files.get(path)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0]) if self.headers["Range"] else 0
                self.send_response(206 if start else 200)
                if hub:
                    self.send_header("X-Repo-Commit", COMMIT)
                    self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if not body:
                    return
                if path in server.truncate_once:
                    server.truncate_once.discard(path)
                    self.wfile.write(data[start : len(data) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(data[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def gets(self, path: str) -> list[str | None]:
        """The Range headers of the GET requests for ``path``."""
        return [rng for method, p, rng in self.requests if method == "GET" and p == path]


@pytest.fixture
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty Hub and torch.hub caches, online, no proxy for 127.0.0.1."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "torch_hub"))
    yield tmp_path
    torch.hub.set_dir(previous)


def _serve(hub: bool, monkeypatch: pytest.MonkeyPatch) -> Iterator[FileServer]:
    server = FileServer(hub)
    server.thread.start()
    if hub:  # what HF_ENDPOINT sets when huggingface_hub is imported
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", server.url)
        template = server.url + "/{repo_id}/resolve/{revision}/{filename}"
        monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def hub(caches: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FileServer]:
    yield from _serve(True, monkeypatch)


@pytest.fixture
def web(caches: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FileServer]:
    yield from _serve(False, monkeypatch)


def _saved(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _entry(name: str, monkeypatch: pytest.MonkeyPatch, *sources: Source, **args: object) -> None:
    """Zoo entry ``name`` with a tiny architecture (``args`` added) and ``sources`` as its release's."""
    info = uniformer.model_info(name)
    release = dataclasses.replace(info.release(), sources=sources)
    model_args = MappingProxyType({**info.model_args, **TINY, **args})
    entry = dataclasses.replace(info, model_args=model_args, releases=(release,))
    monkeypatch.setattr(catalog, "_MODELS", {**catalog._MODELS, name: entry})


def _same_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    ours = model.state_dict()
    assert ours.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(ours[key], value), key


def test_a_hub_file_is_downloaded_verified_and_loaded(hub: FileServer, monkeypatch: pytest.MonkeyPatch) -> None:
    state = uniformer.create_model("uniformer_small", **TINY).state_dict()
    data = _saved({"model": state})
    hub.files["/Sense-X/uniformer_image/resolve/main/w.pth"] = data
    _entry("uniformer_small", monkeypatch, HubFile("Sense-X/uniformer_image", "w.pth", _sha256(data), len(data)))
    _same_weights(uniformer.create_model("uniformer_small", pretrained=True), state)
    assert ("GET", "/Sense-X/uniformer_image/resolve/main/w.pth", None) in hub.requests
    # a second model comes from the Hub cache: the file is not downloaded again
    uniformer.create_model("uniformer_small", pretrained=True)
    assert len(hub.gets("/Sense-X/uniformer_image/resolve/main/w.pth")) == 1


def test_an_interrupted_hub_download_resumes(hub: FileServer, monkeypatch: pytest.MonkeyPatch) -> None:
    state = uniformer.create_model("uniformer_small", **TINY).state_dict()
    data = _saved(state)
    path = "/Sense-X/uniformer_image/resolve/main/w.pth"
    hub.files[path] = data
    hub.truncate_once.add(path)
    # huggingface_hub resumes from the last whole chunk it wrote: chunks smaller than this file (10 MB by default)
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 1 << 16)
    _entry("uniformer_small", monkeypatch, HubFile("Sense-X/uniformer_image", "w.pth", _sha256(data)))
    _same_weights(uniformer.create_model("uniformer_small", pretrained=True), state)
    first, second = hub.gets(path)
    assert first is None and second is not None and 0 < int(second.removeprefix("bytes=").rstrip("-")) <= len(data) // 2


def test_a_hub_file_of_another_hash_is_refused_and_removed(
    hub: FileServer, caches: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _saved(uniformer.create_model("uniformer_small", **TINY).state_dict())
    hub.files["/Sense-X/uniformer_image/resolve/main/w.pth"] = data
    published = "ab" * 32
    _entry("uniformer_small", monkeypatch, HubFile("Sense-X/uniformer_image", "w.pth", published))
    with pytest.raises(ChecksumError) as err:
        uniformer.create_model("uniformer_small", pretrained=True)
    message = str(err.value)
    assert "w.pth" in message and published in message and _sha256(data) in message
    repo = caches / "hub" / "models--Sense-X--uniformer_image"
    assert not [p for p in (repo / "blobs").iterdir()] and not list(repo.rglob("w.pth"))  # no blob, no partial


def test_a_url_with_a_good_hash_prefix_loads_an_mmaction2_file_in_the_official_class_order(
    web: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mmaction2's Kinetics-400 recognizer: ``backbone.*``, ``cls_head.fc_cls.*`` with the rows in mmaction2's label
    order; read back, the classifier is ``head`` and row i is the official class i."""
    official = uniformer.create_model("uniformer_small_k400_16x4", **TINY).state_dict()
    theirs, ours = load_foreign_labels("mmaction2", "kinetics-400"), load_labels("kinetics-400")
    assert theirs != ours and sorted(theirs) == sorted(ours)
    to_theirs = torch.tensor([ours.index(name) for name in theirs])  # their row j is our row to_theirs[j]
    mmaction2 = {f"backbone.{k}": v for k, v in official.items() if not k.startswith("head.")}
    mmaction2 |= {"cls_head.fc_cls.weight": official["head.weight"][to_theirs]}
    mmaction2 |= {"cls_head.fc_cls.bias": official["head.bias"][to_theirs]}
    data = _saved({"meta": {"mmengine_version": "0.7.0"}, "state_dict": mmaction2})
    name = f"uniformer-small_k400-{_sha256(data)[:8]}.pth"
    web.files[f"/{name}"] = data
    _entry("uniformer_small_k400_16x4", monkeypatch, UrlFile(f"{web.url}/{name}", sha256=_sha256(data)[:8]))
    model = uniformer.create_model("uniformer_small_k400_16x4", pretrained=True)
    _same_weights(model, official)
    riding = theirs.index("riding a bike")
    assert riding != 0 and torch.equal(model.head.weight[0], mmaction2["cls_head.fc_cls.weight"][riding])
    assert Path(torch.hub.get_dir(), "checkpoints", name).is_file()


def test_a_url_with_a_bad_hash_is_refused_and_nothing_stays_in_the_cache(
    web: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _saved(uniformer.create_model("uniformer_small", **TINY).state_dict())
    web.files["/w-00000000.pth"] = data
    _entry("uniformer_small", monkeypatch, UrlFile(f"{web.url}/w-00000000.pth", sha256="00000000"))
    with pytest.raises(ChecksumError) as err:
        uniformer.create_model("uniformer_small", pretrained=True)
    assert "w-00000000.pth" in str(err.value) and "00000000" in str(err.value) and _sha256(data)[:8] in str(err.value)
    folder = Path(torch.hub.get_dir(), "checkpoints")
    assert not folder.exists() or not list(folder.iterdir())


def test_a_cut_url_download_is_refused_and_nothing_stays_in_the_cache(
    web: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.hub reads a cut body as a short file; its hash check refuses it (a URL source always has a hash)."""
    data = _saved(uniformer.create_model("uniformer_small", **TINY).state_dict())
    web.files["/a.pth"] = data
    web.truncate_once.add("/a.pth")
    _entry("uniformer_small", monkeypatch, UrlFile(f"{web.url}/a.pth", sha256=_sha256(data)))
    with pytest.raises(ChecksumError, match=f"a.pth from URL {web.url}/a.pth: SHA-256 .*{_sha256(data)}"):
        uniformer.create_model("uniformer_small", pretrained=True)
    assert not list(Path(torch.hub.get_dir(), "checkpoints").iterdir())
    # the next try downloads it whole
    _same_weights(uniformer.create_model("uniformer_small", pretrained=True), torch.load(io.BytesIO(data)))


def test_offline_nothing_is_requested_and_the_message_says_what_to_fetch_and_how_to_pass_it(
    hub: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    sources = (
        HubFile("Sense-X/uniformer_image", "w.pth"),
        UrlFile(f"{hub.url}/w-12345678.pth", sha256="12345678"),
        DriveFile("1-uepH3Q3BhTmWU6HK-sGAGQC_MpfIiPD"),
    )
    _entry("uniformer_small", monkeypatch, *sources)
    with pytest.raises(FileNotFoundError) as err:
        uniformer.create_model("uniformer_small", pretrained=True)
    message = str(err.value)
    assert hub.requests == []
    assert "Hub Sense-X/uniformer_image/w.pth" in message and f"URL {hub.url}/w-12345678.pth" in message
    assert "drive.google.com/file/d/1-uepH3Q3BhTmWU6HK-sGAGQC_MpfIiPD" in message
    assert "https://huggingface.co/Sense-X/uniformer_image/resolve/main/w.pth" in message
    assert "checkpoint_path='.../w.pth'" in message and "--checkpoint FILE" in message


def test_hosts_that_do_not_resolve_fail_at_once_with_the_manual_route(
    caches: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No name resolution (no network): the cache is read and nothing is retried (huggingface_hub is told to stay
    local, torch.hub is not called)."""
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "https://hub.invalid")
    release = Release(
        224,
        1.0,
        (
            HubFile("Sense-X/uniformer_image", "w.pth"),
            UrlFile("https://weights.invalid/uniformer-a1b2c3d4.pth", sha256="a1b2c3d4"),
        ),
    )
    with pytest.raises(FileNotFoundError) as err:
        fetch_release("uniformer_small", release)
    message = str(err.value)
    assert "hub.invalid does not resolve (no network?), and not in the Hub cache" in message
    assert "weights.invalid does not resolve (no network?), and not in " in message
    assert "https://huggingface.co/Sense-X/uniformer_image/resolve/main/w.pth" in message
    assert "checkpoint_path='.../w.pth'" in message


@pytest.mark.skipif(gdown_installed(), reason="the message for a machine without gdown")
def test_a_drive_only_release_without_gdown_names_the_extra_and_the_manual_route(caches: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        uniformer.create_model("uniformer_base_ls", pretrained=True)
    message = str(err.value)
    assert "gdown" in message and "https://drive.google.com/file/d/10FnwzMVgGL8bPO3EMZ7oG4vDvqnPoBK5/view" in message
    assert "checkpoint_path='DOWNLOADED.pth' (CLI: --checkpoint FILE)" in message


def test_an_mmpose_1x_file_loads_with_its_head_renamed(tmp_path: Path) -> None:
    """mmpose 1.x renamed the heatmap head ``keypoint_head.*`` to ``head.*``; read back, it loads strictly."""
    official = build_pose_model(17, TINY, channels=32).state_dict()
    renamed = {k.replace("keypoint_head.", "head.", 1): v for k, v in official.items()}
    torch.save({"meta": {}, "state_dict": renamed}, tmp_path / "mmpose.pth")
    model = uniformer.create_model(
        "uniformer_small_topdown_coco_256x192", checkpoint_path=tmp_path / "mmpose.pth", head_channels=32, **TINY
    )
    _same_weights(model, official)


def test_an_mmaction2_file_of_another_class_count_keeps_its_row_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    official = uniformer.create_model("uniformer_small_k400_16x4", num_classes=5, **TINY).state_dict()
    mmaction2 = {f"backbone.{k}": v for k, v in official.items() if not k.startswith("head.")}
    mmaction2 |= {"cls_head.fc_cls.weight": official["head.weight"], "cls_head.fc_cls.bias": official["head.bias"]}
    torch.save({"state_dict": mmaction2}, tmp_path / "mine.pth")
    with caplog.at_level("WARNING"):
        model = uniformer.create_model("uniformer_small_k400_16x4", checkpoint_path=tmp_path / "mine.pth", **TINY)
    _same_weights(model, official)
    assert "5-class classifier: no mmaction2 class order ships for it, rows kept in the file's order" in caplog.text


def test_hf_endpoint_points_the_hub_client_at_the_server(
    hub: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The HF_ENDPOINT environment variable itself, in a fresh interpreter: ``pretrained="hf-hub:ORG/REPO"`` reads a
    saved model from the Hub server into the Hub cache given by HF_HUB_CACHE."""
    model = uniformer.create_model("uniformer_tiny_motion")
    uniformer.save_pretrained(model, tmp_path / "saved")
    for path in (tmp_path / "saved").iterdir():
        hub.files[f"/me/motion/resolve/main/{path.name}"] = path.read_bytes()
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "0"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(uniformer.__file__).parents[1]), env.get("PYTHONPATH")]))
    script = (
        "import sys, torch, uniformer; "
        "m = uniformer.create_model('uniformer_tiny_motion', pretrained='hf-hub:me/motion'); "
        "torch.save(m.state_dict(), sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "out.pt")], env=env, check=True, timeout=600)
    _same_weights(model, torch.load(tmp_path / "out.pt"))
    assert {path for method, path, _ in hub.requests if method == "GET" and path.startswith("/me/")} == {
        "/me/motion/resolve/main/config.json",
        "/me/motion/resolve/main/model.safetensors",
    }
    assert list((tmp_path / "cache").glob("models--me--motion/snapshots/*/model.safetensors"))
