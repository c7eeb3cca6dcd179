"""Tests of harness.data.events: each event dataset written in its own on-disk format and read
back with its real tonic class, the checks, the CIFAR10-DVS split, binning and the frame cache.

The files are written as tonic 1.7 reads them (see harness/data/events.py):

* N-MNIST: `<root>/NMNIST/{Train,Test}/<digit>/<n>.bin`, 5 bytes per event.
* DVS Gesture: `<root>/DVSGesture/ibmGesture{Train,Test}/user<NN>_<lighting>/<label>.npy`,
  `[N, 4]` int64 columns x, y, p, t in ms.
* CIFAR10-DVS: `<root>/CIFAR10DVS/<class name>/<name>.aedat4`, uncompressed AEDAT 4 (magic
  line, size-prefixed IOHeader flatbuffer with the XML stream description, then one events
  packet: stream id, size, size-prefixed EventPacket flatbuffer of 16-byte events).

No test downloads: tonic's download function is replaced by one that fails the test, except
where a test replaces it with a fake that writes the files.
"""

from __future__ import annotations

import importlib.util
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import tonic.dataset

from harness.data.events import EventSet, check_events, read_events
from harness.data.frames import (
    BINNING,
    FrameCache,
    bin_events,
    bin_samples,
    cached_frames,
    frame_cache_key,
    source_digest,
)
from harness.errors import HarnessInputError


@pytest.fixture(autouse=True)
def _no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"tonic tried to download: {args}")

    monkeypatch.setattr(tonic.dataset, "download_and_extract_archive", refuse)


def _events(rng: np.random.Generator, n: int, width: int, height: int, t_max: int) -> dict[str, np.ndarray]:
    t = np.sort(rng.integers(0, t_max, n))
    return {
        "x": rng.integers(0, width, n),
        "y": rng.integers(0, height, n),
        "t": t,
        "p": rng.integers(0, 2, n),
    }


# ---------------------------------------------------------------- N-MNIST


def _write_nmnist_bin(path: Path, ev: dict[str, np.ndarray]) -> None:
    """N-MNIST's 40-bit records: x, y, then polarity (bit 7) and a 23-bit µs timestamp."""
    t = ev["t"].astype(np.int64)
    rec = np.zeros((len(t), 5), dtype=np.uint8)
    rec[:, 0] = ev["x"]
    rec[:, 1] = ev["y"]
    rec[:, 2] = (ev["p"].astype(np.int64) << 7) | ((t >> 16) & 0x7F)
    rec[:, 3] = (t >> 8) & 0xFF
    rec[:, 4] = t & 0xFF
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(rec.tobytes())


def _write_nmnist(root: Path, seed: int = 0) -> dict[str, list[tuple[str, int, dict[str, np.ndarray]]]]:
    """Two samples of digits 0, 3 and 7 (train) and of 1 and 3 (test); returns what was written."""
    rng = np.random.default_rng(seed)
    written: dict[str, list[tuple[str, int, dict[str, np.ndarray]]]] = {"Train": [], "Test": []}
    for split, digits in (("Train", (0, 3, 7)), ("Test", (1, 3))):
        for digit in digits:
            for k in range(2):
                ev = _events(rng, 5 + k, 34, 34, 300_000)
                rel = f"NMNIST/{split}/{digit}/{digit:01d}{k:04d}.bin"
                _write_nmnist_bin(root / rel, ev)
                written[split].append((rel, digit, ev))
    return written


def _assert_same(got: EventSet, written: list[tuple[str, int, dict[str, np.ndarray]]], t_scale: int = 1) -> None:
    written = sorted(written)  # read_events orders samples by path
    assert got.files == tuple(rel for rel, _, _ in written)
    np.testing.assert_array_equal(got.labels, [label for _, label, _ in written])
    assert got.labels.dtype == np.int64
    assert len(got.events) == len(written)
    for events, (_, _, ev) in zip(got.events, written, strict=True):
        assert set(events.dtype.names) == {"x", "y", "t", "p"}
        for name in ("x", "y", "p"):
            np.testing.assert_array_equal(events[name].astype(np.int64), ev[name])
        np.testing.assert_array_equal(events["t"].astype(np.int64), ev["t"] * t_scale)


def test_nmnist_round_trip(tmp_path: Path) -> None:
    written = _write_nmnist(tmp_path)
    train, test = read_events("nmnist", str(tmp_path), download=False)
    assert test is not None
    _assert_same(train, written["Train"])
    _assert_same(test, written["Test"])
    assert train.sensor_size == (34, 34, 2) and train.num_classes == 10
    assert train.events[0].dtype == np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])


def test_nmnist_overflow_marker(tmp_path: Path) -> None:
    """tonic's own decoding: a record with y == 240 is no event but adds 2**13 µs to later ones."""
    path = tmp_path / "NMNIST" / "Train" / "4" / "00001.bin"
    _write_nmnist_bin(
        path, {k: np.array(v) for k, v in {"x": [1, 0, 2], "y": [2, 240, 3], "t": [10, 0, 20], "p": [1, 0, 0]}.items()}
    )
    (tmp_path / "NMNIST" / "Test" / "4").mkdir(parents=True)
    _write_nmnist_bin(tmp_path / "NMNIST" / "Test" / "4" / "a.bin", {k: np.array([1]) for k in "xytp"})
    train, _ = read_events("nmnist", tmp_path, download=False)
    np.testing.assert_array_equal(train.events[0]["t"], [10, 20 + 2**13])
    np.testing.assert_array_equal(train.events[0]["x"], [1, 2])


# ---------------------------------------------------------------- DVS Gesture


def _write_dvs_gesture(root: Path, seed: int = 1) -> dict[str, list[tuple[str, int, dict[str, np.ndarray]]]]:
    """Labels 0, 5, 10 (train) and 2, 10 (test), one file per label in each of two user folders."""
    rng = np.random.default_rng(seed)
    written: dict[str, list[tuple[str, int, dict[str, np.ndarray]]]] = {"ibmGestureTrain": [], "ibmGestureTest": []}
    for split, labels, users in (
        ("ibmGestureTrain", (0, 5, 10), ("user01_fluorescent", "user02_led")),
        ("ibmGestureTest", (2, 10), ("user24_natural", "user29_lab")),
    ):
        for user in users:
            for label in labels:
                ev = _events(rng, 6, 128, 128, 6_000)  # t in ms
                rel = f"DVSGesture/{split}/{user}/{label}.npy"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                np.save(root / rel, np.stack([ev["x"], ev["y"], ev["p"], ev["t"]], axis=1).astype(np.int64))
                written[split].append((rel, label, ev))
    return written


def test_dvs_gesture_round_trip(tmp_path: Path) -> None:
    written = _write_dvs_gesture(tmp_path)
    train, test = read_events("dvs-gesture", tmp_path, download=False)
    assert test is not None
    _assert_same(train, written["ibmGestureTrain"], t_scale=1000)  # tonic converts ms to µs
    _assert_same(test, written["ibmGestureTest"], t_scale=1000)
    assert train.sensor_size == (128, 128, 2) and train.num_classes == 11
    assert train.events[0].dtype == np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])


# ---------------------------------------------------------------- CIFAR10-DVS

CIFAR_CLASSES = ("airplane", "cat", "truck")
CIFAR_LABELS = {"airplane": 0, "cat": 3, "truck": 9}
_AEDAT_EVENT = np.dtype(
    {"names": ["t", "x", "y", "on"], "formats": ["<i8", "<i2", "<i2", "?"], "offsets": [0, 8, 10, 12], "itemsize": 16}
)
_AEDAT_DESCRIPTION = (
    '<dv version="2.0"><node name="outInfo" path="/mainModule/output/">'
    '<node name="0" path="/mainModule/output/0/">'
    '<attr key="typeIdentifier" type="string">EVTS</attr>'
    '<node name="info" path="/mainModule/output/0/info/">'
    '<attr key="sizeX" type="int">128</attr><attr key="sizeY" type="int">128</attr>'
    "</node></node></node></dv>"
)


def _aedat_ioheader(description: str) -> bytes:
    """The IOHeader flatbuffer (identifier IOHE): compression None (default), description."""
    text = description.encode() + b"\0"
    buf = bytearray(struct.pack("<I", 20) + b"IOHE")  # root table at 20
    buf += struct.pack("<HHHHH", 10, 8, 0, 0, 4)  # vtable at 8: 3 slots, only description, at +4
    buf += b"\0\0"
    buf += struct.pack("<iI", 20 - 8, 28 - 24)  # table: to its vtable; to the string at 28
    buf += struct.pack("<I", len(text) - 1) + text
    return bytes(buf + b"\0" * (-len(buf) % 4))


def _aedat_packet(ev: dict[str, np.ndarray]) -> bytes:
    """A size-prefixed EventPacket flatbuffer (identifier EVTS): one vector of Event structs."""
    records = np.zeros(len(ev["t"]), dtype=_AEDAT_EVENT)
    records["t"], records["x"], records["y"], records["on"] = ev["t"], ev["x"], ev["y"], ev["p"]
    body = bytearray(4)  # the size prefix, below
    body += struct.pack("<I", 20 - 4) + b"EVTS"  # root table at 20
    body += struct.pack("<HHH", 6, 8, 4) + b"\0\0"  # vtable at 12: 1 slot, at +4
    body += struct.pack("<iI", 20 - 12, 28 - 24)  # table: to its vtable; to the vector at 28
    body += struct.pack("<I", len(records)) + records.tobytes()  # elements 8-aligned at 32
    body[0:4] = struct.pack("<I", len(body) - 4)
    return bytes(body)


def _write_aedat4(path: Path, ev: dict[str, np.ndarray]) -> None:
    header = _aedat_ioheader(_AEDAT_DESCRIPTION)
    packet = _aedat_packet(ev)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"#!AER-DAT4.0\r\n" + struct.pack("<I", len(header)) + header + struct.pack("<iI", 0, len(packet)) + packet
    )


def _read_written_aedat4(path: str) -> np.ndarray:
    """Decodes exactly what `_write_aedat4` writes, in the `aedat` package's dtype (the field
    'on' titled 'p'), for the test that runs where `aedat` is not installed."""
    data = Path(path).read_bytes()
    start = 14 + 4 + struct.unpack_from("<I", data, 14)[0] + 8  # magic, header, packet header
    (n,) = struct.unpack_from("<I", data, start + 28)
    records = np.frombuffer(data, dtype=_AEDAT_EVENT, count=n, offset=start + 32)
    out = np.zeros(n, dtype=[("t", "<u8"), ("x", "<u2"), ("y", "<u2"), (("p", "on"), "?")])
    for name in ("t", "x", "y", "on"):
        out[name] = records[name]
    return out


def _write_cifar10_dvs(root: Path, seed: int = 2) -> list[tuple[str, int, dict[str, np.ndarray]]]:
    rng = np.random.default_rng(seed)
    written = []
    for name in CIFAR_CLASSES:
        for k in range(2):
            ev = _events(rng, 7, 128, 128, 1_000_000)
            rel = f"CIFAR10DVS/{name}/cifar10_{name}_{k}.aedat4"
            _write_aedat4(root / rel, ev)
            written.append((rel, CIFAR_LABELS[name], ev))
    return written


def test_cifar10_dvs_round_trip_with_aedat(tmp_path: Path) -> None:
    written = _write_cifar10_dvs(tmp_path)
    everything, test = read_events("cifar10-dvs", tmp_path, download=False)
    assert test is None
    _assert_same(everything, written)
    assert everything.sensor_size == (128, 128, 2) and everything.num_classes == 10
    assert everything.events[0].dtype == np.dtype([("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("p", "?")])


def test_cifar10_dvs_listing_and_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tonic's CIFAR10DVS class lists and labels the files; only the AEDAT 4 decoding is the
    test's own (so this runs where `aedat` is not installed)."""
    import tonic.datasets.cifar10dvs

    written = _write_cifar10_dvs(tmp_path)
    monkeypatch.setattr(tonic.datasets.cifar10dvs, "read_aedat4", _read_written_aedat4)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "aedat" else real_find_spec(name, *a)
    )
    everything, test = read_events("cifar10-dvs", tmp_path, download=False)
    assert test is None
    _assert_same(everything, written)
    # The aedat dtype's title is dropped: plain fields t, x, y, p.
    assert everything.events[0].dtype == np.dtype([("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("p", "?")])


def test_cifar10_dvs_needs_aedat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_cifar10_dvs(tmp_path)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "aedat" else real_find_spec(name, *a)
    )
    with pytest.raises(HarnessInputError, match="pip install aedat"):
        check_events("cifar10-dvs", tmp_path, download=False)


# ---------------------------------------------------------------- checks and downloads


@pytest.mark.parametrize("name", ["nmnist", "dvs-gesture", "cifar10-dvs"])
def test_check_events_needs_root(name: str) -> None:
    with pytest.raises(HarnessInputError, match="dataset.root") as err:
        check_events(name, None, download=False)
    assert "\n" not in str(err.value)
    with pytest.raises(HarnessInputError, match="dataset.root"):
        read_events(name, None, download=True)


@pytest.mark.parametrize(
    ("name", "folder"),
    [("nmnist", "NMNIST/Train"), ("dvs-gesture", "DVSGesture/ibmGestureTrain"), ("cifar10-dvs", "CIFAR10DVS")],
)
def test_check_events_missing_files(name: str, folder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object() if n == "aedat" else real_find_spec(n, *a))
    for call in (check_events, read_events):
        with pytest.raises(HarnessInputError) as err:
            call(name, str(tmp_path), False)
        message = str(err.value)
        assert "\n" not in message
        assert os.path.join(str(tmp_path), folder) in message
        assert "folder not found" in message
        assert "set dataset.download: true to fetch them" in message
    check_events(name, str(tmp_path), True)  # may be downloaded: nothing to complain about


def test_check_events_missing_test_split(tmp_path: Path) -> None:
    _write_nmnist(tmp_path)
    for path in (tmp_path / "NMNIST" / "Test").rglob("*.bin"):
        path.unlink()
    with pytest.raises(HarnessInputError, match=r"NMNIST/Test \(no \*\.bin files in it\)"):
        check_events("nmnist", tmp_path, download=False)
    check_events("nmnist", tmp_path, download=True)


def test_check_events_root_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(HarnessInputError, match="is not a folder"):
        check_events("nmnist", tmp_path / "f", download=True)


def test_unknown_dataset() -> None:
    with pytest.raises(HarnessInputError, match="unknown event dataset 'nmist'"):
        check_events("nmist", "/tmp", download=False)


def test_download_true_fetches_with_tonic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With download, tonic's own download runs (here a fake that writes the files), for the
    split whose files are missing only."""
    written = _write_nmnist(tmp_path / "source")
    calls = []

    def fake_download(url: str, download_root: str, filename: str, md5: str) -> None:
        calls.append((url, filename, md5))
        split = "Train" if filename == "train.zip" else "Test"
        for rel, _, ev in written[split]:
            _write_nmnist_bin(tmp_path / rel, ev)

    monkeypatch.setattr(tonic.dataset, "download_and_extract_archive", fake_download)
    for rel, _, ev in written["Test"]:  # the test split is there already
        _write_nmnist_bin(tmp_path / rel, ev)
    train, test = read_events("nmnist", tmp_path, download=True)
    assert [c[1] for c in calls] == ["train.zip"]
    assert calls[0][0].startswith("https://")
    assert test is not None
    _assert_same(train, written["Train"])
    _assert_same(test, written["Test"])


def test_unreadable_file_is_one_line_input_error(tmp_path: Path) -> None:
    _write_dvs_gesture(tmp_path)
    (tmp_path / "DVSGesture" / "ibmGestureTrain" / "user01_fluorescent" / "5.npy").write_bytes(b"not npy")
    with pytest.raises(HarnessInputError, match=r"tonic could not read .*user01_fluorescent/5\.npy") as err:
        read_events("dvs-gesture", tmp_path, download=False)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- CIFAR10-DVS split


def _structured(x: list[int], y: list[int], t: list[int], p: list[int]) -> np.ndarray:
    out = np.zeros(len(t), dtype=[("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])
    out["x"], out["y"], out["t"], out["p"] = x, y, t, p
    return out


def test_bin_events_cells() -> None:
    # Sensor W=5, H=3. t spans 0..1000 and T=4: tonic's bins are [0,250) [250,500) [500,750)
    # [750,1000), so the last event (t = 1000 = t_max) is not counted.
    events = _structured(
        x=[0, 4, 4, 2, 1, 3], y=[0, 2, 2, 1, 0, 1], t=[0, 249, 250, 600, 999, 1000], p=[1, 0, 0, 1, 1, 0]
    )
    frames = bin_events(events, (5, 3, 2), 4)
    assert frames.shape == (4, 2, 3, 5) and frames.dtype == np.float32
    expected = np.zeros((4, 2, 3, 5), np.float32)
    expected[0, 1, 0, 0] = 1
    expected[0, 0, 2, 4] = 1
    expected[1, 0, 2, 4] = 1
    expected[2, 1, 1, 2] = 1
    expected[3, 1, 0, 1] = 1
    np.testing.assert_array_equal(frames, expected)
    assert frames.sum() == len(events) - 1  # all but the event at t_max


def test_bin_events_counts_every_event_before_t_max() -> None:
    rng = np.random.default_rng(3)
    n = 2000
    events = _structured(
        x=list(rng.integers(0, 34, n)),
        y=list(rng.integers(0, 34, n)),
        t=list(np.sort(rng.integers(0, 300_000, n))),
        p=list(rng.integers(0, 2, n)),
    )
    t0, span, steps = events["t"][0], events["t"][-1] - events["t"][0], 10
    counted = np.count_nonzero(events["t"] < t0 + steps * (span // steps))
    frames = bin_events(events, (34, 34, 2), steps)
    assert frames.sum() == counted
    assert counted >= n - 5  # only the events at (or within T µs of) t_max are lost
    # Counts are not clipped: three events on one cell count 3.
    same = _structured(x=[1, 1, 1, 0], y=[2, 2, 2, 0], t=[0, 1, 2, 100], p=[1, 1, 1, 0])
    assert bin_events(same, (3, 3, 2), 2)[0, 1, 2, 1] == 3


def test_bin_events_empty_and_unsorted() -> None:
    empty = _structured([], [], [], [])
    frames = bin_events(empty, (5, 3, 2), 6)
    assert frames.shape == (6, 2, 3, 5) and frames.dtype == np.float32 and not frames.any()
    events = _structured(x=[0, 1, 2], y=[0, 1, 2], t=[900, 0, 450], p=[0, 1, 0])
    np.testing.assert_array_equal(bin_events(events, (3, 3, 2), 2), bin_events(events[[1, 2, 0]], (3, 3, 2), 2))
    with pytest.raises(ValueError, match="outside the sensor"):
        bin_events(_structured([5], [0], [0], [0]), (5, 3, 2), 2)
    with pytest.raises(ValueError, match="time_steps"):
        bin_events(events, (3, 3, 2), 0)


# ---------------------------------------------------------------- frame cache


def _key(tmp_path: Path, steps: int) -> dict[str, object]:
    return frame_cache_key("nmnist", str(tmp_path / "data"), "train", steps, "0" * 64)


def test_frame_cache_writes_once_and_keys_on_time_steps(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    samples = [
        _structured(
            *(list(rng.integers(0, 4, 20)) for _ in range(2)),
            list(np.sort(rng.integers(0, 1000, 20))),
            list(rng.integers(0, 2, 20)),
        )
        for _ in range(3)
    ]
    calls = []

    def make(steps: int):
        def run() -> np.ndarray:
            calls.append(steps)
            return bin_samples(samples, (4, 4, 2), steps)

        return run

    cache_dir = tmp_path / "cache"
    first = cached_frames(cache_dir, _key(tmp_path, 4), make(4))
    assert first.shape == (3, 4, 2, 4, 4) and first.dtype == np.uint8
    np.testing.assert_array_equal(first[1], bin_events(samples[1], (4, 4, 2), 4))
    second = cached_frames(cache_dir, _key(tmp_path, 4), make(4))
    assert calls == [4]  # the second call loaded the file
    np.testing.assert_array_equal(second, first)
    files = sorted(p.name for p in cache_dir.glob("*.npy"))
    assert len(files) == 1 and not list(cache_dir.glob("*.tmp")) and not list(cache_dir.glob(".*"))
    other = cached_frames(cache_dir, _key(tmp_path, 8), make(8))
    assert calls == [4, 8] and other.shape == (3, 8, 2, 4, 4)
    assert len(list(cache_dir.glob("*.npy"))) == 2
    # Another binning name is another file too.
    key = {**_key(tmp_path, 4), "binning": "other"}
    assert FrameCache(cache_dir).path(key) != FrameCache(cache_dir).path(_key(tmp_path, 4))
    assert _key(tmp_path, 4)["binning"] == BINNING == "tonic.ToFrame(n_time_bins)"


def test_frame_cache_rebuilds_a_damaged_file(tmp_path: Path) -> None:
    frames = np.arange(2 * 3 * 2 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2, 2)
    calls = []

    def make() -> np.ndarray:
        calls.append(1)
        return frames

    cache = FrameCache(tmp_path)
    key = _key(tmp_path, 3)
    np.testing.assert_array_equal(cache.get(key, make), frames)
    path = cache.path(key)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 5])  # truncated
    np.testing.assert_array_equal(cache.get(key, make), frames)
    assert len(calls) == 2
    np.save(path, np.zeros((2, 5, 2, 2, 2), np.uint8))  # a shape that does not fit the key
    np.testing.assert_array_equal(cache.get(key, make), frames)
    np.save(path, frames.astype(np.float64))  # a dtype the cache never writes
    np.testing.assert_array_equal(cache.get(key, make), frames)
    assert len(calls) == 4
    np.testing.assert_array_equal(cache.get(key, make), frames)
    assert len(calls) == 4


def test_frame_cache_dtype_and_bad_frames(tmp_path: Path) -> None:
    cache = FrameCache(tmp_path)
    big = np.full((1, 2, 2, 1, 1), 300, dtype=np.uint16)
    assert cache.get(_key(tmp_path, 2), lambda: big).dtype == np.uint16
    with pytest.raises(ValueError, match="integer counts"):
        cache.get(_key(tmp_path, 3), lambda: np.full((1, 3, 2, 1, 1), 0.5, np.float32))
    with pytest.raises(ValueError, match="T=4"):
        cache.get(_key(tmp_path, 4), lambda: np.zeros((1, 3, 2, 1, 1), np.uint8))


def test_source_digest_sees_changes(tmp_path: Path) -> None:
    written = _write_nmnist(tmp_path)
    train, _ = read_events("nmnist", tmp_path, download=False)
    before = source_digest(tmp_path, train.files)
    assert before == source_digest(tmp_path, train.files)
    rel, _, ev = written["Train"][0]
    _write_nmnist_bin(tmp_path / rel, {k: np.concatenate([v, v[-1:]]) for k, v in ev.items()})
    assert source_digest(tmp_path, train.files) != before
    key = frame_cache_key("nmnist", tmp_path, "train", 4, before)
    assert key == {
        "dataset": "nmnist",
        "root": str(tmp_path),
        "split": "train",
        "time_steps": 4,
        "binning": BINNING,
        "sources": before,
    }


# ---------------------------------------------------------------- event data in a trial


def _write_small_nmnist(root: Path) -> None:
    """N-MNIST files for a trial: digits 2, 5 and 8, four training and two test samples each,
    each digit's events in its own third of the sensor (so there is something to learn)."""
    rng = np.random.default_rng(7)
    for split, count in (("Train", 4), ("Test", 2)):
        for band, digit in enumerate((2, 5, 8)):
            for k in range(count):
                ev = _events(rng, 60, 34, 11, 200_000)
                ev["y"] = ev["y"] + 11 * band
                _write_nmnist_bin(root / "NMNIST" / split / str(digit) / f"{k:05d}.bin", ev)


def _nmnist_config(root: Path, method: str, **overrides: object):
    from harness.config.resolve import trial_config

    values = {
        "method": method,
        "dataset.name": "nmnist",
        "dataset.root": str(root),
        "dataset.val_fraction": 0.25,
        "snn.time_steps": 3,
        "student.depth": 8,
        "student.width": 4,
        "teacher.depth": 8,
        "teacher.width": 4,
        "teacher.epochs": 1,
        "train.epochs": 1,
        "train.batch_size": 4,
        "eval.time_steps": [1, 2, 3],
        "eval.noise": {"event_drop": [0.0, 0.5], "polarity_flip": [1.0]},
    }
    return trial_config({**values, **overrides})


@pytest.mark.parametrize("method", ["kd", "direct", "conversion"])
def test_a_trial_runs_end_to_end_on_n_mnist_files(tmp_path: Path, method: str) -> None:
    from harness.trial import train

    _write_small_nmnist(tmp_path)
    config = _nmnist_config(tmp_path, method)
    assert config.encoding.name == "events" and config.train.augment == "none"  # the dataset's own
    metrics = train(config, teacher_cache=tmp_path / "teachers", log=lambda _: None)
    assert set(metrics) >= {"test_accuracy", "timestep/3", "noise/event_drop/0.5", "noise/polarity_flip/1"}
    # Level 0 corrupts nothing: the events binned again are the clean frames.
    assert metrics["noise/event_drop/0"] == metrics["test_accuracy"]
    if method == "kd":
        assert metrics["teacher_noise/event_drop/0"] == metrics["teacher_test_accuracy"]
    assert list((tmp_path / ".harness-frames").glob("*.npy"))  # binned once, cached on disk


def test_the_frames_come_from_the_cache_without_decoding_once_binned(tmp_path: Path, monkeypatch) -> None:
    from harness.data.cache import cached_raw
    from harness.data.events import ListedSplit, load_frames

    _write_small_nmnist(tmp_path)
    first = load_frames("nmnist", str(tmp_path), False, 3)
    assert first.x.shape == (12, 3, 2, 34, 34) and first.test_x.shape == (6, 3, 2, 34, 34)
    cached_raw.cache_clear()

    def refuse(self, positions=None):
        raise AssertionError("decoded although the frames are cached")

    monkeypatch.setattr(ListedSplit, "decode", refuse)
    again = load_frames("nmnist", str(tmp_path), False, 3)
    assert np.array_equal(again.x, first.x) and np.array_equal(again.y, first.y)
    with pytest.raises(AssertionError, match="decoded"):
        load_frames("nmnist", str(tmp_path), False, 2)  # another T: binned anew


def test_event_data_refuse_image_noises_image_encodings_and_resizing(tmp_path: Path) -> None:
    from pydantic import ValidationError

    _write_small_nmnist(tmp_path)
    with pytest.raises(ValidationError, match=r"eval.noise.gaussian\n.*corrupts images, and dataset 'nmnist'"):
        _nmnist_config(tmp_path, "direct", **{"eval.noise": {"gaussian": [0.1]}})
    with pytest.raises(ValidationError, match=r"encoding.name\n.*holds event frames, which encoding 'direct'"):
        _nmnist_config(tmp_path, "direct", **{"encoding.name": "direct"})
    with pytest.raises(ValidationError, match=r"dataset.image_size\n.*keeps its sensor's size"):
        _nmnist_config(tmp_path, "direct", **{"dataset.image_size": 16})
    from harness.config.resolve import trial_config

    with pytest.raises(ValidationError, match=r"eval.noise.event_drop\n.*corrupts event streams, and dataset 'digits'"):
        trial_config({"dataset.name": "digits", "eval.noise": {"event_drop": [0.1]}})


def test_cifar10_dvs_holds_out_a_stratified_seeded_tenth_as_its_test_split(tmp_path: Path) -> None:
    from harness.data import load_dataset

    for name in CIFAR_CLASSES:  # 3 classes x 20 samples: 60, a tenth of them (6) test
        rng = np.random.default_rng(len(name))
        for k in range(20):
            _write_aedat4(tmp_path / f"CIFAR10DVS/{name}/{k:02d}.aedat4", _events(rng, 9, 128, 128, 500_000))

    def load(seed: int):
        return load_dataset("cifar10-dvs", root=tmp_path, time_bins=2, val_fraction=0.2, split_seed=seed)

    data = load(0)
    assert sorted(data.test_y.tolist()) == [0, 0, 3, 3, 9, 9]  # stratified: two of each class
    assert data.train_x.shape[1:] == (2, 2, 128, 128) and len(data.train_y) + len(data.val_y) == 54
    assert data.digests["test"] == load(0).digests["test"] != load(1).digests["test"]


def test_digits_events_are_generated_alike_in_every_process_and_bin_into_frames() -> None:
    from harness.data import load_dataset
    from harness.data.saccades import SENSOR, generate, record

    samples, labels = generate()
    assert len(samples) == len(labels) == 1797
    images = np.asarray(__import__("sklearn.datasets").datasets.load_digits().images[:3]) / 16.0
    again = record(images, np.random.default_rng(0))
    assert all(np.all(np.diff(events["t"]) >= 0) for events in again)  # sorted in time
    assert all(0 <= events["x"].min() and events["x"].max() < SENSOR[0] for events in again)
    data = load_dataset("digits-events", time_bins=4)
    assert data.train_x.shape[1:] == (4, 2, 20, 20) and data.time_bins == 4 and data.in_channels == 2
    assert data.train_x.sum() > 0 and len(data.test_y) == 360  # the 20 % test split of digits


PER_STEP_METHOD = '''
import torch
from harness.methods.student import StudentMethod


class PerStep(StudentMethod):
    """A plugin method: the mean over t of each step's cross-entropy (TET's loss)."""

    def loss(self, images, labels):
        logits = self.student(images, self.ctx.config.snn.time_steps)  # [T, B, K]
        return torch.stack([torch.nn.functional.cross_entropy(step, labels) for step in logits]).mean()
'''


def test_a_plugin_method_trains_on_event_data_like_the_built_ins(tmp_path: Path, install_plugin) -> None:
    from harness.trial import train

    install_plugin("per-step", {"methods": {"per_step": "per_step:PerStep"}}, {"per_step.py": PER_STEP_METHOD})
    _write_small_nmnist(tmp_path)
    metrics = train(_nmnist_config(tmp_path, "per_step"), teacher_cache=tmp_path / "teachers", log=lambda _: None)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and "noise/event_drop/0.5" in metrics
