"""joblib's raw array bytes: sized exactly as `joblib.numpy_pickle.NumpyArrayWrapper.read_array`.

`joblib.dump` writes each numpy array as a `NumpyArrayWrapper` (BUILD) followed by the
array's raw bytes straight in the stream; `joblib.load` reads `prod(shape) * dtype.itemsize`
bytes there (after an alignment pad when the wrapper says so), or, for object arrays, one
nested `pickle.load`. A scanner that sizes the region differently skips bytes joblib runs
as opcodes, so the size comes from numpy's own dtype rules (`numpy_dtype_info`: 'float64'
and '<f8' are both 8 bytes) and anything not understood stops the run (fail closed).
"""

from __future__ import annotations

import math

from ckreg.readers.pickle_vm import Call, Global, Malformed, NumpyArray, NumpyDtype, run_pickle

WRAPPERS = frozenset({"joblib.numpy_pickle.NumpyArrayWrapper",
                      "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper"})


def joblib_hook(nested_runs: list):
    """A BUILD hook for `run_pickle`; nested object-array pickle runs are appended to `nested_runs`."""

    def hook(vm, inst, state) -> bool:
        if not (isinstance(inst, Call) and isinstance(inst.func, Global) and inst.func.full in WRAPPERS):
            return False
        if not isinstance(state, dict):
            raise Malformed("NumpyArrayWrapper state is not a dict", vm.pos)
        inst.state = state
        dtype = state.get("dtype")
        shape = state.get("shape")
        if not isinstance(shape, tuple) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise Malformed("NumpyArrayWrapper without a valid shape", vm.pos)
        if vm.frame_end is not None and vm.pos < vm.frame_end:
            # joblib reads the array from the file, past the frame: not modelled, refused
            raise Malformed("joblib array data inside a FRAME", vm.pos)
        vm.frame_end = None  # joblib commits the frame before writing raw array bytes
        if not isinstance(dtype, NumpyDtype) or dtype.itemsize is None:
            spec = dtype.spec if isinstance(dtype, NumpyDtype) else type(dtype).__name__
            raise Malformed(f"NumpyArrayWrapper with a dtype whose size is not understood ({spec!r}): "
                            f"the bytes joblib would skip cannot be sized", vm.pos)
        if dtype.kind == "O":
            # joblib calls plain pickle.load here: the C unpickler, without joblib's BUILD hook
            nested = run_pickle(vm.raw, vm.pos, max_bytes=vm.max_bytes)
            nested_runs.append(nested)
            if not nested.clean:
                raise Malformed(f"object array pickle: {nested.error}", nested.error_pos or vm.pos)
            vm.pos = nested.end
            arr = nested.value if isinstance(nested.value, NumpyArray) else NumpyArray(shape=shape, dtype=dtype)
            vm.stack[-1] = arr
            return True
        if dtype.itemsize == 0:
            raise Malformed("NumpyArrayWrapper with a zero-size dtype (joblib cannot read it)", vm.pos)
        if state.get("numpy_array_alignment_bytes") is not None:
            pad = vm.read(1)[0]
            if pad:
                vm.read(pad)
        nbytes = math.prod(shape) * dtype.itemsize
        vm.length(nbytes, "joblib array")
        raw = bytes(vm.read(nbytes))
        vm.stack[-1] = NumpyArray(cls=state.get("subclass"), shape=shape, dtype=dtype,
                                  fortran=state.get("order") == "F", raw=raw, built=True)
        return True

    return hook
