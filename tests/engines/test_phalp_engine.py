"""The phalp engine's parts that run without upstream, a GPU or weights.

Upstream-dependent behaviour is in tests/engines/test_phalp_upstream.py (marked ``phalp``).
"""

from __future__ import annotations

import io
import pickle
import urllib.error
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import torch

from pose_pipeline.engines.registry import EngineRegistry
from pose_pipeline.engines.phalp import PhalpOptions, WeightPaths
from pose_pipeline.engines.batching import BatchStats, run_adaptive
from pose_pipeline.engines.gpu import StageMeter, memory_fraction, select_device
from pose_pipeline.engines.phalp.state import StateError, dump_state, load_state
from pose_pipeline.engines.phalp.tracking import read_tracks
from pose_pipeline.engines.phalp.upstream import RENDER_MODULES, install_render_stubs
from pose_pipeline.errors import EngineUnavailable, GpuOutOfMemory, InvalidOption
from pose_pipeline.cli import weights as weights_cli


# --- options -------------------------------------------------------------------------------------


def test_defaults_follow_upstream_and_expose_thresholds():
    o = PhalpOptions()
    assert (o.detector, o.detection_threshold, o.min_box_width, o.min_box_height) == ("vitdet", 0.8, 50.0, 100.0)
    assert (o.n_init, o.max_age, o.predict, o.precision) == (5, 50, "TPL", "fp32")


@pytest.mark.parametrize("options", [{"detector": "yolo"}, {"precision": "int8"}, {"detector_precision": "fp64"},
                                     {"max_batch": 0},
                                     {"detection_threshold": 1.5}, {"n_init": 9, "track_history": 7},
                                     {"predict": "XYZ"}])
def test_bad_options_are_refused(options):
    with pytest.raises(InvalidOption):
        PhalpOptions.from_mapping(options)


def test_unknown_option_names_the_known_ones():
    with pytest.raises(InvalidOption, match="max_batch"):
        PhalpOptions.from_mapping({"max_bacth": 8})


# --- weights -------------------------------------------------------------------------------------


def test_default_layout_is_upstreams_cache(tmp_path):
    paths = WeightPaths.resolve(tmp_path, detector_cache=tmp_path / "iopath")
    assert paths.smpl_model == tmp_path / "phalp/3D/models/smpl/SMPL_NEUTRAL.pkl"
    assert paths.hmar_weights == tmp_path / "phalp/weights/hmar_v2_weights.pth"
    assert paths.hmr2_checkpoint.name == "epoch=35-step=1000000.ckpt"
    assert paths.hmr2_model_config == paths.hmr2_checkpoint.parent.parent / "model_config.yaml"
    assert paths.detector_weights.name == "model_final_f05665.pkl"
    assert str(paths.detector_weights).startswith(str(tmp_path / "iopath/detectron2/ViTDet"))
    lighter = WeightPaths.resolve(tmp_path, detector="maskrcnn", detector_cache=tmp_path / "iopath")
    assert "mask_rcnn_regnety_4gf" in str(lighter.detector_weights)


def test_overrides_replace_single_files(tmp_path):
    smpl = tmp_path / "licensed" / "smpl.pkl"
    paths = PhalpOptions(weights_dir=str(tmp_path), smpl_model_path=str(smpl),
                         hmr2_checkpoint=str(tmp_path / "x/y/ckpts/model.ckpt")).weight_paths()
    assert paths.smpl_model == smpl
    assert paths.hmr2_model_config == tmp_path / "x/y/model_config.yaml"
    with pytest.raises(ValueError, match="unknown weight file"):
        WeightPaths.resolve(tmp_path, hmr3_checkpoint="x")


def test_check_lists_every_missing_file_with_what_and_where(tmp_path):
    paths = WeightPaths.resolve(tmp_path, detector_cache=tmp_path / "iopath")
    present = paths.hmar_weights
    present.parent.mkdir(parents=True)
    present.write_bytes(b"x")
    with pytest.raises(EngineUnavailable) as info:
        paths.check()
    message = info.value.message
    required = paths.required_files()
    assert len(required) == 16
    for f in required:
        if f.path == present:
            assert str(f.path) not in message
        else:
            assert str(f.path) in message and f.what in message
    assert "register" in message and "smpl.is.tue.mpg.de" in message  # the SMPL licence
    assert "hmr2_data.tar.gz" in message and "pose-pipeline models fetch --engine phalp" in message
    assert info.value.details["missing_files"] == [str(f.path) for f in required if f.path != present]


def test_check_passes_when_all_files_exist(tmp_path):
    paths = WeightPaths.resolve(tmp_path, detector_cache=tmp_path / "iopath")
    for f in paths.required_files():
        f.path.parent.mkdir(parents=True, exist_ok=True)
        f.path.write_bytes(b"x")
    paths.check()


def test_trusted_loading_allows_only_configured_files(tmp_path):
    from pose_pipeline.engines.phalp.weights import trusted_checkpoint_loading

    trusted, other = tmp_path / "trusted.ckpt", tmp_path / "other.ckpt"
    for path in (trusted, other):
        torch.save({"cfg": PickledConfig(), "w": torch.ones(2)}, path)
    with trusted_checkpoint_loading([trusted]):
        assert torch.load(trusted)["w"].sum() == 2  # weights_only=False for this file only
        with pytest.raises(pickle.UnpicklingError):
            torch.load(other)  # torch's default (weights_only=True) refuses the object
    with pytest.raises(pickle.UnpicklingError):
        torch.load(trusted)  # outside the block: the default again


class PickledConfig:  # a non-tensor object in a checkpoint, as in upstream's
    pass


# --- adaptive batching ---------------------------------------------------------------------------


def _model_that_fits(limit: int, calls: list):
    def fn(batch: slice):
        size = batch.stop - batch.start
        calls.append(size)
        if size > limit:
            raise torch.cuda.OutOfMemoryError(f"batch {size} does not fit")
        return [i * 10 for i in range(batch.start, batch.stop)]
    return fn


def test_halves_on_oom_and_keeps_order():
    calls, freed = [], []
    stats = BatchStats()
    out = run_adaptive(_model_that_fits(5, calls), 23, max_batch=16, stats=stats, on_oom=lambda: freed.append(1))
    assert out == [i * 10 for i in range(23)]
    assert calls[:3] == [16, 8, 4]  # 16 and 8 fail, 4 fits
    assert max(stats.batch_sizes) == 4 and sum(stats.batch_sizes) == 23
    assert stats.halvings == 2 and len(freed) == 2
    assert stats.limit == 4  # where the next call of this model starts: no failures again
    calls.clear()
    assert run_adaptive(_model_that_fits(5, calls), 9, max_batch=stats.limit) == [i * 10 for i in range(9)]
    assert calls == [4, 4, 1]


def test_fails_with_gpu_out_of_memory_only_at_batch_one():
    calls, freed = [], []
    with pytest.raises(GpuOutOfMemory) as info:
        run_adaptive(_model_that_fits(0, calls), 3, max_batch=4, on_oom=lambda: freed.append(1))
    assert calls == [3, 2, 1]  # 3 items: the first slice is all of them
    assert len(freed) == 3  # memory released before raising, too
    assert info.value.code == "gpu_out_of_memory" and info.value.details["batch_size"] == 1


def test_stage_meter_adds_up_each_stage_s_time():
    meter = StageMeter(torch.device("cpu"), peak_memory=True)  # no CUDA: time only
    for _ in range(2):
        with meter("detect"):
            pass
    with pytest.raises(ValueError), meter("hmr2"):  # a failed block counts too
        raise ValueError
    assert set(meter.seconds) == {"detect", "hmr2"} and all(s >= 0 for s in meter.seconds.values())
    assert not meter.peak_bytes


def test_no_items_no_calls():
    assert run_adaptive(lambda s: pytest.fail("called"), 0, max_batch=8) == []


def test_other_errors_are_not_swallowed():
    def fn(batch):
        raise ValueError("broken model")
    with pytest.raises(ValueError, match="broken model"):
        run_adaptive(fn, 3, max_batch=2)


# --- GPU -----------------------------------------------------------------------------------------


def test_memory_fraction_from_ray_or_explicit():
    assert memory_fraction(None, 0.5) == 0.5
    assert memory_fraction(None, 1.0) is None  # a whole GPU: no cap needed
    assert memory_fraction(None, None) is None
    assert memory_fraction(0.3, 0.5) == 0.3
    with pytest.raises(InvalidOption):
        memory_fraction(1.5, None)


def test_device_never_takes_a_physical_index():
    with pytest.raises(InvalidOption):
        select_device("cuda:1")
    assert select_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(EngineUnavailable):
            select_device("cuda")


# --- state export / restore ----------------------------------------------------------------------


class FakeModel(torch.nn.Module):
    pass


class TrackerLike:
    """The shape of upstream's Tracker state: tracks with history deques, and the model."""

    def __init__(self, model):
        self.tracks = [{"id": 1, "history": deque([{"uv": np.ones((4, 8, 8))}] * 3, maxlen=7)}]
        self._next_id = 2
        self.phalp_tracker = model


def test_state_round_trip_detaches_and_reattaches_the_model():
    model, other_model = FakeModel(), FakeModel()
    tracker = TrackerLike(model)
    data = dump_state(tracker, {"next_frame": 12})
    assert tracker.phalp_tracker is model  # re-attached after export
    restored, session = load_state(data, other_model)
    assert restored.phalp_tracker is other_model
    assert session == {"next_frame": 12} and restored._next_id == 2
    history = restored.tracks[0]["history"]
    assert history.maxlen == 7 and history[0] is history[2]  # shared records stay shared
    np.testing.assert_array_equal(history[0]["uv"], np.ones((4, 8, 8)))


def test_state_refuses_a_second_model_reference():
    tracker = TrackerLike(FakeModel())
    tracker.tracks[0]["oops"] = FakeModel()
    with pytest.raises(StateError, match="references a model"):
        dump_state(tracker, {})


def test_state_rejects_foreign_bytes():
    with pytest.raises(StateError):
        load_state(b"motion-engine-state", FakeModel())
    with pytest.raises(StateError):
        load_state(dump_state(TrackerLike(FakeModel()), {})[:60], FakeModel())


# --- what a frame reports (back-fill) ------------------------------------------------------------


class TrackDouble:
    """Upstream Track's reading interface: state, hits, time_since_update, history."""

    def __init__(self, track_id, hits, since_update, confirmed, times):
        self.track_id, self.hits, self.time_since_update = track_id, hits, since_update
        self._confirmed = confirmed
        self.track_data = {"history": deque([{"time": t, "tid": track_id} for t in times], maxlen=7)}

    def is_confirmed(self):
        return self._confirmed


class TrackerDouble:
    def __init__(self, tracks):
        self.tracks = tracks


def test_confirmation_back_fills_the_previous_n_init_minus_one_frames():
    just_confirmed = TrackDouble(4, hits=5, since_update=0, confirmed=True, times=[96, 96, 96, 97, 98, 99, 100])
    steady = TrackDouble(2, hits=40, since_update=0, confirmed=True, times=range(94, 101))
    occluded = TrackDouble(3, hits=20, since_update=2, confirmed=True, times=range(92, 99))
    tentative = TrackDouble(5, hits=2, since_update=0, confirmed=False, times=[99, 100])
    report = read_tracks(TrackerDouble([just_confirmed, steady, occluded, tentative]), 100, n_init=5)
    assert [(tid, rec["time"], det) for tid, rec, det in report.people] == [(4, 100, True), (2, 100, True),
                                                                            (3, 98, False)]
    assert [(t, tid) for t, tid, _ in report.backfill] == [(99, 4), (98, 4), (97, 4), (96, 4)]
    without_predicted = read_tracks(TrackerDouble([occluded]), 100, n_init=5, include_undetected=False)
    assert without_predicted.people == []


# --- detection order -----------------------------------------------------------------------------


def test_people_by_decreasing_score_ties_in_detectron2s_order_numbered_before_the_size_filter():
    from pose_pipeline.engines.phalp.detector import keep_people

    # detectron2's output, as its unstable NMS sort may leave it: ties (1.0) interleaved
    scores = np.array([0.9, 1.0, 0.3, 1.0, 0.95, 1.0, 0.99], dtype=np.float32)
    classes = np.array([0, 0, 0, 2, 0, 0, 0])
    boxes = np.array([[0, 0, 60, 120]] * 7, dtype=np.float32)
    boxes[5] = [0, 0, 10, 10]  # a person too small
    keep, numbers = keep_people(boxes, scores, classes, threshold=0.8, min_width=50, min_height=100)
    # people above 0.8, stably by score: 1 (1.0), 5 (1.0), 6, 4, 0; then 5 dropped for size
    assert keep.tolist() == [1, 6, 4, 0]
    assert numbers.tolist() == [0, 2, 3, 4]  # upstream numbers people before the size filter


# --- engine selection without the extra ----------------------------------------------------------


def test_engine_import_needs_no_upstream():
    import pose_pipeline.engines.phalp as package
    assert package.PhalpEngine.holdback_frames == 0  # set per instance from n_init


def test_engine_unavailable_names_what_is_missing(tmp_path):
    try:
        import phalp.configs.base  # noqa: F401
        import neural_renderer  # noqa: F401
        have_upstream = True
    except ImportError:
        have_upstream = False
    with pytest.raises(EngineUnavailable) as info:
        EngineRegistry().create("phalp", {"weights_dir": str(tmp_path), "detector_cache": str(tmp_path)})
    message = info.value.message
    if have_upstream:
        assert "weight file(s) missing" in message
    else:
        assert "pose-pipeline[phalp]" in message
        assert "cannot be imported" in message or "fail to import" in message


def test_render_stubs_refuse_to_render():
    import sys
    install_render_stubs()
    for name, attributes in RENDER_MODULES.items():
        cls = getattr(sys.modules[name], attributes[0])
        with pytest.raises(RuntimeError, match="rendering is disabled"):
            cls()


# --- the phalp engine's files through `pose-pipeline models` -----------------------------------


def test_models_check_of_the_phalp_engine_lists_its_files(tmp_path, capsys):
    from pose_pipeline.cli.main import main

    assert main(["models", "check", "--engine", "phalp", "--weights-dir", str(tmp_path),
                 "--detector-cache", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "MISSING" in out and str(tmp_path / "phalp") in out


def test_fetch_without_network_fails_clearly_and_leaves_no_partial_file(tmp_path):
    def offline(url):
        raise urllib.error.URLError("Temporary failure in name resolution")

    paths = WeightPaths.resolve(tmp_path, detector_cache=tmp_path / "iopath")
    out = io.StringIO()
    with pytest.raises(EngineUnavailable, match="cannot download https://") as info:
        weights_cli.fetch_weights(paths, out=out, opener=offline)
    assert "place the file at" in info.value.message
    assert not [p for p in Path(tmp_path).rglob("*") if p.is_file()]


def test_fetch_never_downloads_smpl(tmp_path):
    paths = WeightPaths.resolve(tmp_path, detector_cache=tmp_path / "iopath")
    for f in paths.required_files():
        if f.key not in ("smpl_model", "texture"):
            f.path.parent.mkdir(parents=True, exist_ok=True)
            f.path.write_bytes(b"x")
    asked = []

    def opener(url):
        asked.append(url)
        return io.BytesIO(b"texture bytes")

    out = io.StringIO()
    assert weights_cli.fetch_weights(paths, out=out, opener=opener) == 1  # SMPL still missing
    assert asked == ["https://www.cs.utexas.edu/~pavlakos/phalp/3D/texture.npz"]
    assert paths.texture.read_bytes() == b"texture bytes"
    assert "NOT downloaded: the SMPL model" in out.getvalue()
