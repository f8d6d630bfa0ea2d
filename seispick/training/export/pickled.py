"""Reading whole pickled torch modules (``torch.save(model)``) without their classes.

Early SeisBench versions saved some weights as the pickled model object; unpickling those needs the classes of
that SeisBench version (today's SeisBench fails with ``'PhaseNet' object has no attribute
'_reassemble_blocks_array'``). Here every class the pickle names is replaced by an inert stand-in that only
records its attributes, and only torch's tensor-rebuilding functions and ``OrderedDict`` are real, so nothing
from the file is imported or run. The module tree then gives a state_dict (``_parameters``, ``_buffers`` and
``_modules``, as ``nn.Module.state_dict`` names them) and the plain attributes of the top-level object.
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import pickle
import types
from pathlib import Path
from typing import Any

import torch

__all__ = ["PickledModule", "load_pickled_module"]

# Callables a torch pickle needs to give tensors back; nothing else from the file is called.
_REAL = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch", "Size"): torch.Size,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
}
_DTYPES = {name for name in dir(torch) if isinstance(getattr(torch, name, None), torch.dtype)}


class Stub:
    """Stand-in for a class named in the pickle: keeps the state it is given, calls nothing."""

    _pickled_name = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)


def _stub(module: str, name: str) -> type:
    return type(name, (Stub,), {"_pickled_name": f"{module}.{name}"})


def _reconstructor(cls: type, base: type, state: Any) -> Any:
    """``copyreg._reconstructor`` (pickle protocol 0/1) for stand-ins only."""
    return cls.__new__(cls) if isinstance(cls, type) and issubclass(cls, Stub) else Stub()


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _compat_pickle.NAME_MAPPING:  # protocol 2 writes Python 2 names
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _REAL:
            return _REAL[(module, name)]
        if module == "torch" and name in _DTYPES:
            return getattr(torch, name)
        if (module, name) == ("copyreg", "_reconstructor"):
            return _reconstructor
        if (module, name) == ("builtins", "object"):
            return Stub
        return _stub(module, name)


# torch.load takes the module that provides the Unpickler.
_pickle_module = types.ModuleType("seispick_stub_pickle")
_pickle_module.Unpickler = _Unpickler  # type: ignore[attr-defined]
_pickle_module.load = lambda f, **kw: _Unpickler(f, **kw).load()  # type: ignore[attr-defined]


class PickledModule:
    """What a pickled module holds: its class name, state_dict and plain (str/int/float/bool/list) attributes."""

    def __init__(
        self, class_name: str, state_dict: dict[str, torch.Tensor], attributes: dict[str, Any]
    ) -> None:
        self.class_name = class_name
        self.state_dict = state_dict
        self.attributes = attributes


def _walk(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    attrs = getattr(obj, "__dict__", {})
    skip = attrs.get("_non_persistent_buffers_set") or set()
    for key in ("_parameters", "_buffers"):
        for name, value in (attrs.get(key) or {}).items():
            if isinstance(value, torch.Tensor) and not (key == "_buffers" and name in skip):
                out[prefix + name] = value.detach()
    for name, child in (attrs.get("_modules") or {}).items():
        if child is not None:
            _walk(child, f"{prefix}{name}.", out)


def _plain(value: Any) -> bool:
    if isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    return False


def load_pickled_module(path: str | Path | bytes) -> PickledModule:
    """Read a ``torch.save(model)`` file without importing any class it names; raise ``ValueError`` when the
    file holds no module (e.g. a plain state_dict or something else)."""
    source = io.BytesIO(path) if isinstance(path, bytes) else Path(path)
    try:
        obj = torch.load(source, map_location="cpu", weights_only=False, pickle_module=_pickle_module)
    except Exception as exc:  # any unpickling failure: not a file we can read
        raise ValueError(f"cannot read it as a pickled torch module ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, Stub) or "_modules" not in obj.__dict__:
        raise ValueError(f"it holds a {type(obj).__name__}, not a pickled torch module")
    state: dict[str, torch.Tensor] = {}
    _walk(obj, "", state)
    attributes = {k: v for k, v in obj.__dict__.items() if not k.startswith("_") and _plain(v)}
    for key in ("_component_order", "_annotate_args"):
        if _plain(obj.__dict__.get(key)):
            attributes[key] = obj.__dict__[key]
    return PickledModule(type(obj)._pickled_name, state, attributes)
