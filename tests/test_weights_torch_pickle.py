"""Reading torch.save files without torch: fixtures written by PyTorch, hand-written files, refusals."""

import collections
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fcn_tf
from fcn_tf.weights import WeightsError, load_weights, sniff_format
from fcn_tf.weights.torch_pickle import find_state_dict, read_pth, read_state_dict
from torch_writer import Global, Tensor, save, save_state_dict

PARITY = Path(__file__).resolve().parents[2] / "shared" / "parity"
TORCH_FILES = PARITY / "torch_files"
PWNED = Path("/tmp/fcn_tf_pwned")


def expected():
    with np.load(TORCH_FILES / "formats_expected.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.mark.parametrize("name", ["formats.pth", "formats_legacy.pth", "checkpoint_dict.pth"])
def test_pytorch_written_files(name):
    state = read_state_dict(TORCH_FILES / name)
    reference = expected()
    assert list(state) == list(reference)
    for key, value in reference.items():
        assert state[key].dtype == value.dtype, key
        assert state[key].shape == value.shape, key
        np.testing.assert_array_equal(state[key], value, err_msg=key)
    # Views of one storage come out as independent arrays.
    state["transposed"][0, 0] = 1e6
    assert state["row_view"][0] != 1e6
    assert sniff_format(TORCH_FILES / name) == "torch_pth"


def test_checkpoint_dict_keeps_the_rest():
    obj = read_pth(TORCH_FILES / "checkpoint_dict.pth")
    assert obj["epoch"] == 3
    assert obj["optimizer"] == {"lr": 0.1}
    assert isinstance(obj["model"], collections.OrderedDict)


def test_malicious_file_is_refused_and_never_run():
    PWNED.unlink(missing_ok=True)
    with pytest.raises(WeightsError) as info:
        read_pth(TORCH_FILES / "malicious.pth")
    message = str(info.value)
    assert message.startswith(str(TORCH_FILES / "malicious.pth"))
    assert "posix.system" in message and "refused" in message
    assert not PWNED.exists()


def test_refused_global_in_a_hand_written_file(tmp_path):
    obj = collections.OrderedDict(w=Global("os", "system", ("true",)))
    path = save(tmp_path / "evil.pth", obj, {})
    with pytest.raises(WeightsError, match=r"names the global os\.system"):
        read_pth(path)
    legacy = save(tmp_path / "evil_legacy.pth", obj, {}, legacy=True)
    with pytest.raises(WeightsError, match=r"names the global os\.system"):
        read_pth(legacy)


@pytest.mark.parametrize("legacy", [False, True])
def test_dtypes_round_trip(tmp_path, legacy):
    rng = np.random.default_rng(0)
    state = {
        "f64": rng.normal(size=(2, 3)),
        "f32": rng.normal(size=(4, 3, 2, 2)).astype(np.float32),
        "f16": rng.normal(size=5).astype(np.float16),
        "i64": np.arange(-3, 3, dtype=np.int64),
        "i32": np.arange(4, dtype=np.int32).reshape(2, 2),
        "u8": np.arange(7, dtype=np.uint8),
        "b": np.array([True, False]),
        "scalar": np.array(7, dtype=np.int64),
        "empty": np.zeros((0, 3), np.float32),
    }
    path = save_state_dict(tmp_path / "state.pth", state, legacy=legacy)
    loaded = read_state_dict(path)
    for key, value in state.items():
        assert loaded[key].dtype == value.dtype, key
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)


@pytest.mark.parametrize("legacy", [False, True])
def test_views_offsets_strides_and_shared_storage(tmp_path, legacy):
    base = np.arange(24, dtype=np.float32)
    obj = collections.OrderedDict(
        transposed=Tensor("s", 0, (6, 4), (1, 6)),
        row=Tensor("s", 6, (6,), (1,)),
        sliced=Tensor("s", 2, (4, 3), (6, 1)),
        broadcast=Tensor("s", 5, (3, 2), (0, 1)),
    )
    loaded = read_state_dict(save(tmp_path / "views.pth", obj, {"s": base}, legacy=legacy))
    np.testing.assert_array_equal(loaded["transposed"], base.reshape(4, 6).T)
    np.testing.assert_array_equal(loaded["row"], base[6:12])
    np.testing.assert_array_equal(loaded["sliced"], base.reshape(4, 6)[:, 2:5])
    np.testing.assert_array_equal(loaded["broadcast"], [[5, 6]] * 3)


def test_a_view_beyond_its_storage_is_refused(tmp_path):
    obj = collections.OrderedDict(w=Tensor("s", 4, (3, 3), (3, 1)))
    path = save(tmp_path / "oob.pth", obj, {"s": np.zeros(9, np.float32)})
    with pytest.raises(WeightsError, match="reaches element 12 of a storage of 9"):
        read_pth(path)


@pytest.mark.parametrize("wrap", ["model", "state_dict", "net", "model_state_dict"])
def test_state_dict_found_in_a_checkpoint(tmp_path, wrap):
    state = {"conv.weight": np.ones((2, 1, 1, 1), np.float32)}
    path = save_state_dict(tmp_path / "ckpt.pth", state, wrap=wrap)
    assert list(read_state_dict(path)) == ["conv.weight"]


def test_data_parallel_prefix_removed():
    state = {"module.a.weight": np.zeros(1), "module.b.bias": np.zeros(1)}
    assert list(find_state_dict(state)) == ["a.weight", "b.bias"]


def test_no_state_dict(tmp_path):
    path = save(tmp_path / "x.pth", {"epoch": 3, "lr": 0.5}, {})
    with pytest.raises(WeightsError, match=r"no state dict found .* the file holds \['epoch', 'lr'\]"):
        read_state_dict(path)


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_file(tmp_path, legacy):
    state = {"w": np.arange(1000, dtype=np.float32)}
    path = save_state_dict(tmp_path / "full.pth", state, legacy=legacy)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[: os.path.getsize(path) - 600])
    with pytest.raises(WeightsError) as info:
        read_pth(cut)
    assert str(cut) in str(info.value)


def test_not_a_torch_file(tmp_path):
    path = tmp_path / "x.pth"
    path.write_bytes(b"hello, not a pickle")
    with pytest.raises(WeightsError, match="not a PyTorch file"):
        read_pth(path)



def test_pt_suffix_without_torch_content(tmp_path):
    path = tmp_path / "weights.pt"
    path.write_bytes(b"\x80\x02some pickle")
    assert sniff_format(path) == "torch_pth"
    model = fcn_tf.build_model("unet", 2, base_filters=4, depth=1)
    with pytest.raises(WeightsError, match=r"weights.pt: not a PyTorch file: neither a zip"):
        load_weights(model, path)


def test_allowed_globals_cannot_be_altered_by_the_pickle(tmp_path):
    """BUILD on an allowed global (e.g. to swap a function's attributes) is refused."""
    # GLOBAL torch._utils._rebuild_tensor_v2, then BUILD with a state dict.
    body = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n}X\x0c\x00\x00\x00__defaults__(K\x01tsb."
    path = tmp_path / "build.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", body)
    with pytest.raises(WeightsError, match="unexpected state for _rebuild_tensor_v2"):
        read_pth(path)


def test_a_stride_zero_view_within_its_storage_still_loads(tmp_path):
    obj = collections.OrderedDict(w=Tensor("s", 0, (1, 4), (0, 1)),
                                  b=Tensor("s", 1, (3, 1), (1, 0)))
    loaded = read_state_dict(save(tmp_path / "ok.pth", obj, {"s": np.arange(4, dtype=np.float32)}))
    np.testing.assert_array_equal(loaded["w"], [[0, 1, 2, 3]])
    np.testing.assert_array_equal(loaded["b"], [[1], [2], [3]])


def test_many_tensors_over_one_storage_stop_at_the_read_budget(tmp_path):
    storage = np.zeros(1 << 18, np.float32)  # 1 MiB, each view a 1 MiB copy
    obj = collections.OrderedDict((f"w{i}", Tensor("s", 0, (1 << 18,), (1,))) for i in range(80))
    path = save(tmp_path / "many.pth", obj, {"s": storage})
    with pytest.raises(WeightsError, match=r"a tensor of size \(262144,\) \(float32\) declares "
                                           r"1,048,576 bytes.*more than 67,108,864 bytes"):
        read_pth(path)
