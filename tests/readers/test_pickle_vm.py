"""The symbolic pickle machine: exact stack/memo semantics, inert records, malformed => not clean."""

from __future__ import annotations

import pickle
import pickletools
import struct
from collections import OrderedDict

import pytest

from ckreg.readers.pickle_vm import (Call, ExtRef, Global, NumpyArray, NumpyScalar, PersistentRef, TensorRef,
                                     Unhashable, run_all, run_pickle)
from readers_builders import global_op, reduce_call, wrap

DATA = [
    None, True, False, 0, 1, -1, 255, 256, 65535, 65536, -(2 ** 31), 2 ** 31, 2 ** 64 + 3, -(2 ** 70),
    1.5, -0.0, float("inf"), "", "héllo ✓", "a" * 300, b"", b"\x00\xff" * 200, bytearray(b"ab"),
    (), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), [], [1, [2, [3]]], {}, {"a": 1, 2: "b", (1, 2): [3]},
    {1, 2, 3}, frozenset({"x"}), complex(1, 2),
    {"shared": [1, 2]},
]


def _plain(v):
    """What the VM gives for containers, normalised for comparison with pickle.loads."""
    if isinstance(v, Unhashable):
        return _plain(v.value)
    if isinstance(v, dict):
        return {_plain(k) if not isinstance(k, Unhashable) else repr(k.value): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, tuple):
        return tuple(_plain(x) for x in v)
    return v


@pytest.mark.parametrize("protocol", range(0, 6))
@pytest.mark.parametrize("value", DATA, ids=lambda v: type(v).__name__)
def test_data_round_trips_like_pickle(value, protocol):
    if isinstance(value, bytearray) and protocol < 2:
        pytest.skip("bytearray needs a global below protocol 2")
    data = pickle.dumps(value, protocol=protocol)
    run = run_pickle(data)
    assert run.clean, run.error
    assert run.end == len(data)
    expected = pickle.loads(data)
    got = run.value
    if isinstance(expected, (set, frozenset)):
        assert set(got) == set(expected)
    elif isinstance(expected, bytearray):
        assert bytes(got) == bytes(expected)
    elif isinstance(expected, complex):
        assert got == expected  # builtins.complex is interpreted symbolically
    else:
        assert _plain(got) == expected


def test_memo_sharing_is_exact():
    shared = [1, 2]
    data = pickle.dumps({"a": shared, "b": shared}, protocol=4)
    run = run_pickle(data)
    assert run.value["a"] is run.value["b"]


def test_recursive_structure_does_not_loop():
    a = []
    a.append(a)
    run = run_pickle(pickle.dumps(a, protocol=2))
    assert run.clean and run.value[0] is run.value


def test_globals_are_inert_records_and_nothing_is_called(tmp_path):
    target = tmp_path / "pwned"
    body = reduce_call("builtins", "exec", f"open({str(target)!r}, 'w').close()")
    run = run_pickle(wrap(body))
    assert run.clean
    assert isinstance(run.value, Call)
    assert run.value.func.full == "builtins.exec"
    assert [g.full for g in run.globals] == ["builtins.exec"]
    assert not target.exists()


def test_stack_global_and_newobj_ex_and_build():
    # STACK_GLOBAL, NEWOBJ_EX with kwargs, BUILD with a state dict
    body = (b"\x8c\x03mod\x94\x8c\x03Cls\x94\x93\x94" + b")" + b"}\x8c\x01k\x8c\x01v" + b"s" + b"\x92"
            + b"}\x8c\x05state\x88s" + b"b")
    run = run_pickle(wrap(body, 4))
    assert run.clean, run.error
    call = run.value
    assert isinstance(call, Call) and call.kind == "newobj_ex"
    assert call.kwargs == {"k": "v"} and call.state == {"state": True}
    assert [g.full for g in run.globals] == ["mod.Cls"]


def test_inst_and_obj_opcodes():
    inst = b"(" + b"I1\n" + b"i" + b"os\nsystem\n"
    run = run_pickle(inst + b".")
    assert run.clean and run.value.kind == "inst" and run.value.args == (1,)
    obj = b"(" + global_op("os", "system") + b"S'ls'\n" + b"o."
    run = run_pickle(obj)
    assert run.clean and run.value.kind == "obj" and run.value.args == ("ls",)
    assert [g.full for g in run.globals] == ["os.system"]


def test_pop_mark_and_pop_on_empty_frame_pops_a_mark():
    # MARK 1 2 POP_MARK -> stack empty; then N -> None
    run = run_pickle(b"(I1\nI2\n1N.")
    assert run.clean and run.value is None
    # POP with an empty current stack pops the MARK (CPython semantics)
    run = run_pickle(b"N(0.")
    assert run.clean and run.value is None


def test_fickling_pop_bypass_calls_hidden_by_pop_are_still_reported():
    """A call whose result is POPped must still be judged (fickling issue: calls vanish after POP)."""
    body = reduce_call("os", "system", "id") + b"0" + b"N"
    run = run_pickle(wrap(body))
    assert run.clean and run.value is None
    assert [g.full for g in run.globals] == ["os.system"]


def test_persid_and_binpersid_go_through_persistent_load():
    seen = []
    run = run_pickle(b"Pabc\n.", persistent_load=lambda pid: seen.append(pid) or ("loaded", pid))
    assert run.value == ("loaded", "abc")
    run = run_pickle(wrap(b"X\x03\x00\x00\x00keyQ"))
    assert isinstance(run.value, PersistentRef) and run.value.pid == "key"


def test_ext_codes_become_records():
    run = run_pickle(wrap(b"\x82\x05", 2))
    assert run.clean and isinstance(run.value, ExtRef) and run.ext_codes == [5]


def test_orderedict_and_tensor_rebuild_are_interpreted_symbolically():
    storage = (b"(" + b"X\x07\x00\x00\x00storage" + global_op("torch", "FloatStorage") + b"X\x01\x00\x00\x000"
               + b"X\x03\x00\x00\x00cpuK\x06tQ")
    tensor = (global_op("torch._utils", "_rebuild_tensor_v2") + b"(" + storage + b"K\x00" + b"K\x02K\x03\x86"
              + b"K\x03K\x01\x86" + b"\x89" + global_op("collections", "OrderedDict") + b")R" + b"tR")
    body = global_op("collections", "OrderedDict") + b")R" + b"X\x01\x00\x00\x00w" + tensor + b"s"
    run = run_pickle(wrap(body))
    assert run.clean, run.error
    assert isinstance(run.value, dict)
    t = run.value["w"]
    assert isinstance(t, TensorRef) and t.shape == (2, 3) and t.stride == (3, 1)


def test_numpy_records_decode_small_arrays():
    np = pytest.importorskip("numpy")
    for proto in (2, 4, 5):
        run = run_pickle(pickle.dumps({"a": np.arange(4, dtype=np.float32).reshape(2, 2), "s": np.int64(7)},
                                      protocol=proto))
        assert run.clean, run.error
        arr = run.value["a"]
        assert isinstance(arr, NumpyArray) and arr.tolist() == [[0.0, 1.0], [2.0, 3.0]]
        assert isinstance(run.value["s"], NumpyScalar) and run.value["s"].value == 7


# ---------------------------------------------------------------- malformed => not clean


@pytest.mark.parametrize("data,needle", [
    (b"\x80\x02\xff.", "unknown opcode"),
    (b"\x80\x02t.", "MARK stack underflow"),
    (b"\x80\x020.", "stack underflow"),
    (b"\x80\x02h\x07.", "memo miss"),
    (b"\x80\x02q\x00.", "stack underflow"),
    (b"\x80\x04\x8e" + struct.pack("<Q", 2 ** 60) + b".", "cap"),
    (b"\x80\x04\x95" + struct.pack("<Q", 50) + b"N.", "remain"),
    (b"\x80\x06N.", "protocol"),
    (b"\x80\x05\x97.", "out-of-band"),
    (b"\x80\x02(K\x01d.", "odd number"),
    (b"\x80\x02K\x01K\x02\x93.", "STACK_GLOBAL"),
    (b"I12x\n.", "INT"),
])
def test_malformed_streams_are_not_clean(data, needle):
    run = run_pickle(data)
    assert not run.clean
    assert needle.lower() in run.error.lower()


def test_truncated_stream_is_flagged_truncated():
    data = pickle.dumps({"a": list(range(100))}, protocol=4)
    run = run_pickle(data[:-10])
    assert not run.clean and run.truncated


def test_frames_follow_the_c_unpickler_not_pickle_py():
    """CPython's C unpickler (pickle.load, torch.load) only checks that a FRAME's bytes exist:
    straddling, nesting, empty frames and STOP mid-frame all load, so the VM reads them too."""
    good = pickle.dumps(["x" * 10] * 3, protocol=4)
    ops = [op.name for op, _, _ in pickletools.genops(good)]
    assert ops[1] == "FRAME" and run_pickle(good).clean
    (n,) = struct.unpack_from("<Q", good, 3)
    longer = good[:3] + struct.pack("<Q", n + 5) + good[11:]      # frame claims bytes that are not there
    with pytest.raises(pickle.UnpicklingError):
        pickle.loads(longer)
    assert not run_pickle(longer).clean and run_pickle(longer).truncated
    inner = good[:3] + struct.pack("<Q", n - 12) + good[11:]       # an opcode straddles the frame's end
    nested = b"\x80\x04\x95" + struct.pack("<Q", 20) + b"\x95" + struct.pack("<Q", 2) + b"N." + b"N" * 9
    for data in (inner, nested):
        run = run_pickle(data)
        assert run.clean and run.value == pickle.loads(data)
        assert any("FRAME" in w for w in run.warnings)


def test_objects_left_on_the_stack_at_stop_are_a_warning():
    run = run_pickle(b"\x80\x02K\x01K\x02.")
    assert run.clean and run.value == 2
    assert run.warnings and "left on the stack" in run.warnings[0]


def test_run_all_scans_every_pickle_in_sequence():
    data = pickle.dumps(1, protocol=2) + wrap(reduce_call("os", "system", "id")) + pickle.dumps("x", protocol=0)
    runs = run_all(data)
    assert len(runs) == 3 and all(r.clean for r in runs)
    assert [g.full for r in runs for g in r.globals] == ["os.system"]


def test_unhashable_keys_are_kept_not_hashed():
    # DICT with a list key: pickle.loads would fail; the VM keeps a marker
    run = run_pickle(b"(]I1\nd.")
    assert run.clean
    (key,) = run.value.keys()
    assert isinstance(key, Unhashable)


def test_global_record_names():
    g = Global("os", "system")
    assert g.full == "os.system"
    assert OrderedDict  # the interpreter table names collections.OrderedDict, never imports it


def test_object_and_op_budgets_refuse_memory_exhaustion():
    """1 byte per dict would be ~64 bytes of RAM per byte of file: refused past the object budget."""
    from ckreg.readers.pickle_vm import MAX_OBJECTS_DEFAULT

    assert MAX_OBJECTS_DEFAULT <= 2_000_000  # ~130 MB worst case inside the 64 MiB stream cap
    data = b"\x80\x04(" + b"}" * 5001 + b"l."
    assert run_pickle(data).clean
    run = run_pickle(data, max_objects=5000)
    assert not run.clean and "objects" in run.error
    data = b"\x80\x04" + b"N0" * 3000 + b"N."
    run = run_pickle(data, max_ops=5000)
    assert not run.clean and "opcodes" in run.error
    assert run.end == len(data) and not run.truncated  # the rest was still walked to its STOP
