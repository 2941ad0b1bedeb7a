"""A team's own code, carried inside a model's bytes, so the model loads where that code is not.

A pickle names classes by module (``features.MyTransformer``); a server started in another folder,
or a release image, has no ``features``. A model logged with ``provenflow.log_model`` therefore
carries the modules of the team's repository that it needs, in one archive with its pickle:

    model.pkl          the pickle (protocol 5)
    code/<module>.py   each module of the project the pickle names (a package: all its .py files),
                       and any ``code_paths`` given explicitly

The archive is the model's stored object, so its BLAKE3 hash (the model's identity) covers the
code too, and the seal (provenflow.modeling.signing) covers the hash: code that was changed after
the model was registered fails the same check as a changed pickle. ``load`` runs only after
``training.deserialize`` has checked both; only then is the code importable, from the checked bytes
in memory (nothing is extracted to disk).

The archive is deterministic (sorted entries, fixed timestamps, stored uncompressed): the same
model and code give the same bytes, so re-logging an unchanged model is the same version.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import io
import os
import pickle
import pickletools
import sys
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

from provenflow.digest import Digest
from provenflow.errors import ModelCodeError, StoreError, TrainingError

FORMAT = "pickle-with-code-v1"  # the model format of such an archive
PICKLE_ENTRY = "model.pkl"
CODE_DIR = "code/"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # zip's earliest date: no build time in the bytes


@dataclass(frozen=True)
class CodeFile:
    path: str  # inside code/, as imported: features.py, mypkg/__init__.py
    data: bytes

    @property
    def hash(self) -> str:
        return Digest.of_bytes(self.data).hex


# -- finding the code a pickle needs ---------------------------------------------------


def pickled_names(data: bytes) -> set[str]:
    """Every string the pickle holds: module names among them (GLOBAL and STACK_GLOBAL operands)."""
    names: set[str] = set()
    for opcode, arg, _ in pickletools.genops(data):
        if opcode.name == "GLOBAL" and isinstance(arg, str):
            names.add(arg.split(" ", 1)[0])
        elif isinstance(arg, str):
            names.add(arg)
    return names


def _own_file(module: ModuleType, root: Path) -> Path | None:
    """The module's file when it is the team's own: under ROOT, not an installed package."""
    file = getattr(module, "__file__", None)
    if not file or not file.endswith(".py"):
        return None
    path = Path(file).resolve()
    if root not in path.parents or "site-packages" in path.parts or "dist-packages" in path.parts:
        return None
    prefix = Path(sys.prefix).resolve()
    if prefix == path or prefix in path.parents:  # a virtualenv inside the project
        return None
    if module.__name__.split(".")[0] == "provenflow":  # provenflow itself is installed in the image
        return None
    return path


def own_modules(data: bytes, root: Path) -> list[str]:
    """The project's modules that the pickle names, and the project's modules those import (so
    ``features`` importing ``helpers`` carries both); top-level names, sorted."""
    seen: set[str] = set()
    todo = [n for n in pickled_names(data) if n in sys.modules]
    while todo:
        name = todo.pop()
        module = sys.modules.get(name)
        if module is None or _own_file(module, root) is None:
            continue
        top = name.split(".")[0]
        if top in seen:
            continue
        seen.add(top)
        for value in list(vars(module).values()):
            if isinstance(value, ModuleType):
                todo.append(value.__name__)
            elif isinstance(getattr(value, "__module__", None), str):
                todo.append(value.__module__)
    return sorted(seen)


def refuse_main(data: bytes) -> None:
    """A class defined in the script itself pickles as ``__main__.X``: no other process has it."""
    if "__main__" in pickled_names(data):
        raise TrainingError(
            "the model uses a class or function defined in the script being run (__main__), which no "
            "server can import; move it into a module of the project (e.g. features.py) and import it"
        )


def module_files(name: str) -> list[CodeFile]:
    """The files of top-level module NAME: one file, or every .py file of a package."""
    module = sys.modules[name]
    path = Path(module.__file__).resolve()  # type: ignore[arg-type]
    if path.name != "__init__.py":
        return [CodeFile(path.name, path.read_bytes())]
    return _folder_files(path.parent, path.parent.name)


def _folder_files(folder: Path, prefix: str) -> list[CodeFile]:
    out = []
    for file in sorted(folder.rglob("*.py")):
        if "__pycache__" in file.parts:
            continue
        out.append(CodeFile(f"{prefix}/{file.relative_to(folder).as_posix()}", file.read_bytes()))
    return out


def explicit_files(paths: Iterable[str | os.PathLike]) -> list[CodeFile]:
    """``code_paths``, as MLflow takes them: a file goes in as its name, a folder as itself
    (``src/mypkg`` → ``mypkg/...``); the code folder is then on sys.path."""
    out: list[CodeFile] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            out.append(CodeFile(path.name, path.read_bytes()))
        elif path.is_dir():
            out.extend(_folder_files(path.resolve(), path.resolve().name))
        else:
            raise TrainingError(f"code path {str(raw)!r} is neither a file nor a folder; check the path")
    return out


def collect(data: bytes, root: Path, code_paths: Sequence[str | os.PathLike] = ()) -> list[CodeFile]:
    """What the model carries: the project's modules it needs, and CODE_PATHS; one file a path."""
    files = {f.path: f for name in own_modules(data, root) for f in module_files(name)}
    files.update({f.path: f for f in explicit_files(code_paths)})
    return [files[p] for p in sorted(files)]


# -- the installed distributions it needs ----------------------------------------------


def imported_modules(files: Sequence[CodeFile]) -> set[str]:
    """The top-level modules the carried files import (absolute imports, anywhere in the file)."""
    import ast

    names: set[str] = set()
    for file in files:
        if not file.path.endswith(".py"):
            continue
        try:
            tree = ast.parse(file.data)
        except (SyntaxError, ValueError):  # not Python 3 source: it would not import either
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


_VERSIONS: dict[str, str] = {}  # distribution -> version installed, as this process first found it


def installed_version(dist: str) -> str | None:
    """The installed version of DIST (None when it is not installed). A version found is kept for the
    process: reading distribution metadata costs ~2 ms a name, paid on every model load otherwise,
    and a module once imported stays the version it was even if the files change under it."""
    import importlib.metadata

    if dist not in _VERSIONS:
        try:
            _VERSIONS[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None
    return _VERSIONS[dist]


@functools.cache
def _providers() -> dict[str, list[str]]:
    """Top-level module -> the distributions providing it (~0.3 s to read: once per process)."""
    import importlib.metadata

    return dict(importlib.metadata.packages_distributions())


class _Stub:
    """Stands in for every class and function while :func:`global_modules` walks a pickle: accepts
    any call, state and item, so the walk completes without importing or running anything."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Stub:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Stub:
        return _Stub()

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def __getattr__(self, name: str) -> _Stub:
        return _Stub()


class _GlobalsOnly(pickle.Unpickler):
    def __init__(self, file: Any) -> None:
        super().__init__(file)
        self.modules: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        self.modules.add(module)
        return _Stub


def global_modules(data: bytes) -> set[str]:
    """The modules whose classes and functions the pickle names (GLOBAL and STACK_GLOBAL), found by
    unpickling with every one of them replaced by a stub: nothing is imported or executed. (Every
    string in a pickle would also count a DataFrame's ``attrs`` as the ``attrs`` package.)"""
    reader = _GlobalsOnly(io.BytesIO(data))
    try:
        reader.load()
    except Exception:  # a reducer the stub cannot satisfy: the names found so far, and every string
        return reader.modules | pickled_names(data)
    return reader.modules


def requirements(data: bytes, files: Sequence[CodeFile]) -> list[str]:
    """``dist==version`` for each installed distribution that provides a module the pickle names or
    the carried code imports (not the standard library, not provenflow, not the carried modules):
    what a server must have installed besides the carried code. A release image installs those its
    serving packages lack (provenflow.deploy.release)."""
    carried = {f.path.split("/")[0].removesuffix(".py") for f in files}
    pickled = {n.split(".")[0] for n in global_modules(data)}
    names = (pickled | imported_modules(files)) - carried - set(sys.stdlib_module_names) - {"provenflow", "__main__"}
    out = set()
    for name in names:
        for dist in _providers().get(name, []):
            if (version := installed_version(dist)) is not None:
                out.add(f"{dist}=={version}")
    return sorted(out, key=str.lower)


def check_requirements(wanted: Sequence[str], ref: str) -> list[str]:
    """Before a model loads: a distribution it was logged with that is not installed here is a
    ModelCodeError naming it (rather than a bare "no module named" from deep inside the pickle).
    Returns notes for distributions installed in another version (the model may still load)."""
    notes = []
    for requirement in wanted:
        dist, _, version = requirement.partition("==")
        installed = installed_version(dist)
        if installed is None:
            raise ModelCodeError(
                f"model {ref} needs the distribution {requirement} (its code imports it), which is not installed "
                f"here; install it (pip install '{requirement}'), or serve the model from its release image "
                "(provenflow release installs it)"
            )
        if version and installed != version:
            notes.append(f"{dist} {installed} is installed; {ref} was logged with {version}")
    return notes


# -- the archive -----------------------------------------------------------------------


def pack(data: bytes, files: Sequence[CodeFile]) -> bytes:
    """The archive of the pickle and its code (deterministic bytes)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name, content in [(PICKLE_ENTRY, data), *((CODE_DIR + f.path, f.data) for f in files)]:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            archive.writestr(info, content)
    return out.getvalue()


def listing(data: bytes) -> dict[str, str]:
    """The code files of an archive and their BLAKE3 hashes (for metadata and /metadata)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {
            n[len(CODE_DIR) :]: Digest.of_bytes(archive.read(n)).hex
            for n in archive.namelist()
            if n.startswith(CODE_DIR)
        }


def load(data: bytes, ref: str, archive_hash: str) -> Any:
    """Unpickle an archive whose hash and seal the caller has checked. Its code is imported from the
    archive's bytes in memory (:class:`CarriedCode`), never written to disk: a load leaves no folder
    behind and nothing on disk can be swapped between the check and the import. The finder is first
    on ``sys.meta_path`` while the pickle loads, last after. A module the archive lacks and this
    process cannot import is a ModelCodeError naming it."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        if PICKLE_ENTRY not in names:
            raise StoreError(f"model {ref} is a code archive without {PICKLE_ENTRY}; register it again")
        files: dict[str, bytes] = {}
        for name in names:
            if not name.startswith(CODE_DIR) or name.endswith("/"):
                continue
            relative = PurePosixPath(name[len(CODE_DIR) :])
            if relative.is_absolute() or ".." in relative.parts:
                raise StoreError(
                    f"model {ref} carries a code file outside its folder ({name!r}); refusing it"
                )
            files[relative.as_posix()] = archive.read(name)
        pickled = archive.read(PICKLE_ENTRY)
    finder = _finder_for(archive_hash, files)  # the hash the caller checked: not hashed again
    _forget_other_models_code(finder)
    # First while the pickle loads (it imports the carried modules, and they what they import at
    # their top), then last: an import the model's code makes later (inside a function) still finds
    # its carried module, but the process's own imports (the team's code in a notebook, say) find
    # their own copy first, not an old one a model carried.
    _remove(finder)
    sys.meta_path.insert(0, finder)
    try:
        return unpickle(pickled, ref)
    finally:
        _remove(finder)
        sys.meta_path.append(finder)


class CarriedCode(importlib.abc.MetaPathFinder, importlib.abc.InspectLoader):
    """Imports the modules a model archive carries straight from its bytes. ``__file__`` is
    ``<provenflow-model HASH12>/features.py``: no such file exists, and tracebacks and
    ``inspect.getsource`` read the source through :meth:`get_source`."""

    def __init__(self, archive_hash: str, files: dict[str, bytes]) -> None:
        self.archive_hash = archive_hash
        self.files = files
        self.root = f"<provenflow-model {archive_hash[:12]}>"

    def _path_of(self, fullname: str) -> tuple[str, bool] | None:
        base = fullname.replace(".", "/")
        if f"{base}/__init__.py" in self.files:
            return f"{base}/__init__.py", True
        if f"{base}.py" in self.files:
            return f"{base}.py", False
        return None

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        found = self._path_of(fullname)
        if found is None:
            return None
        relative, package = found
        spec = ModuleSpec(fullname, self, origin=f"{self.root}/{relative}", is_package=package)
        if package:
            spec.submodule_search_locations = [f"{self.root}/{relative.rsplit('/', 1)[0]}"]
        spec.has_location = True  # so the module gets a __file__ (the virtual path above)
        return spec

    def get_source(self, fullname: str) -> str | None:
        found = self._path_of(fullname)
        return None if found is None else importlib.util.decode_source(self.files[found[0]])

    def get_code(self, fullname: str) -> Any:
        found = self._path_of(fullname)
        if found is None:
            raise ImportError(f"no module {fullname!r} in model {self.root}", name=fullname)
        return compile(self.files[found[0]], f"{self.root}/{found[0]}", "exec", dont_inherit=True)

    def is_package(self, fullname: str) -> bool:
        found = self._path_of(fullname)
        return bool(found and found[1])


_FINDERS: dict[str, CarriedCode] = {}  # archive hash -> its finder: a model loaded again reuses it


def _finder_for(archive_hash: str, files: dict[str, bytes]) -> CarriedCode:
    if archive_hash not in _FINDERS:
        _FINDERS[archive_hash] = CarriedCode(archive_hash, files)
    return _FINDERS[archive_hash]


def _remove(finder: CarriedCode) -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if f is not finder]


def _forget_other_models_code(finder: CarriedCode) -> None:
    """A process that loads a second model carrying a module of the same name (a new version of
    features.py) must not reuse the first model's: modules another model's archive provided are
    dropped from sys.modules first. A module the process imported from anywhere else (the team's
    own, in a notebook) is left alone, and so is one this same archive provided (the same code)."""
    tops = {path.split("/")[0].removesuffix(".py") for path in finder.files}
    for name in [n for n in sys.modules if n.split(".")[0] in tops]:
        loader = getattr(getattr(sys.modules[name], "__spec__", None), "loader", None)
        if isinstance(loader, CarriedCode) and loader is not finder:
            del sys.modules[name]


def unpickle(data: bytes, ref: str) -> Any:
    """``pickle.loads``, with a missing module said in one line."""
    try:
        return pickle.loads(data)
    except ModuleNotFoundError as exc:
        raise ModelCodeError(
            f"model {ref} needs module {exc.name!r}, which is neither carried with the model nor "
            f"installed here; log the model with provenflow.log_model (it carries the project's modules) "
            f"or code_paths=['{exc.name}.py'], or install the package that provides it"
        ) from None
    except AttributeError as exc:  # the module is there, but not the class the pickle names
        raise ModelCodeError(
            f"model {ref} needs {exc}: the module found here is not the one it was trained with; "
            "log the model with provenflow.log_model so it carries its own code"
        ) from None
