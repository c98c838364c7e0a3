"""Reading lab files: YAML with the line of every key, `extends`, and one-line errors.

A lab file is YAML read with a safe loader. Every mapping read here remembers, per key, the
file and line it came from, so that any later check can say `file:line: problem` (never a
traceback). A file may say `extends: OTHER.yaml` (a path relative to itself): OTHER is read
first and this file's keys are merged into it, mapping into mapping, key by key; a list or
a scalar replaces what OTHER had, and `null` removes the key. The origin of each value is
the file that wrote it, so an error in a shared lab file names the shared file.
"""
import difflib
from pathlib import Path

import yaml

__all__ = ["LabFileError", "Map", "Seq", "read", "check_keys"]


class LabFileError(Exception):
    """A problem in a lab file: `str()` is one line, `file:line: message`."""

    def __init__(self, file, line, message):
        self.file, self.line, self.message = str(file), line, message
        where = f"{self.file}:{line}" if line else self.file
        super().__init__(f"{where}: {message}")


class Map(dict):
    """A YAML mapping that knows where each of its keys was written."""

    def __init__(self, *args, file="?", line=0):
        super().__init__(*args)
        self.file, self.line = file, line
        self.where = {}                      # key -> (file, line)

    def at(self, key=None):
        """(file, line) of `key` (of the mapping itself without one)."""
        return self.where.get(key, (self.file, self.line))

    def error(self, key, message):
        file, line = self.at(key)
        return LabFileError(file, line, message)


class Seq(list):
    """A YAML sequence that knows the line of each item."""

    def __init__(self, *args, file="?", line=0):
        super().__init__(*args)
        self.file, self.line = file, line
        self.lines = []

    def at(self, i=None):
        if i is None or i >= len(self.lines):
            return self.file, self.line
        return self.file, self.lines[i]

    def error(self, i, message):
        return LabFileError(*self.at(i), message)


def _loader_for(path):
    class Loader(yaml.SafeLoader):
        pass

    # YAML 1.1 reads 1:30 as a base-60 integer and yes/no/on/off as booleans: in a lab
    # file a MAC or a port list must stay what it looks like, so only true/false are
    # booleans and integers are plain decimal (or 0x hex).
    Loader.yaml_implicit_resolvers = {
        k: [(tag, rx) for tag, rx in v if tag not in ("tag:yaml.org,2002:bool",
                                                      "tag:yaml.org,2002:int",
                                                      "tag:yaml.org,2002:timestamp")]
        for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    import re
    Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|false)$"),
                                 list("tf"))
    Loader.add_implicit_resolver("tag:yaml.org,2002:int",
                                 re.compile(r"^(?:[-+]?[0-9]+|0x[0-9a-fA-F]+)$"),
                                 list("-+0123456789"))

    def mapping(loader, node):
        out = Map(file=path, line=node.start_mark.line + 1)
        for knode, vnode in node.value:
            key = loader.construct_object(knode, deep=True)
            line = knode.start_mark.line + 1
            if not isinstance(key, (str, int)):
                raise LabFileError(path, line, f"a key must be a name, not {key!r}")
            if key in out:
                raise LabFileError(path, line, f"duplicate key {key!r} (first on line "
                                               f"{out.where[key][1]})")
            out[key] = loader.construct_object(vnode, deep=True)
            out.where[key] = (path, line)
        return out

    def sequence(loader, node):
        out = Seq(file=path, line=node.start_mark.line + 1)
        for item in node.value:
            out.append(loader.construct_object(item, deep=True))
            out.lines.append(item.start_mark.line + 1)
        return out

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, sequence)
    return Loader


def _parse(path):
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LabFileError(path, 0, f"cannot read the file ({e.__class__.__name__}: "
                                    f"{getattr(e, 'strerror', None) or e})") from None
    try:
        data = yaml.load(text, Loader=_loader_for(str(path)))
    except LabFileError:
        raise
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        raise LabFileError(path, mark.line + 1 if mark else 0,
                           f"not valid YAML: {problem}") from None
    if not isinstance(data, Map):
        raise LabFileError(path, 1, "a lab file is a mapping of keys (sites:, links:, ...)")
    return data


def merge(base, over):
    """`over` merged into `base` (both Maps); see the module's docstring."""
    out = Map(base, file=over.file, line=over.line)
    out.where = dict(base.where)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
            out.where.pop(key, None)
            continue
        if isinstance(value, Map) and isinstance(out.get(key), Map):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
        out.where[key] = over.where[key]
    return out


def read(path, _seen=()):
    """The merged Map of a lab file and what it extends."""
    path = Path(path).resolve() if not _seen else Path(path)
    data = _parse(path)
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise data.error("extends", "extends: names one lab file (a path relative to this one)")
    target = (path.parent / base).resolve()
    if target in _seen or target == path:
        raise data.error("extends", f"extends {base} makes a loop")
    if not target.exists():
        raise data.error("extends", f"extends {base}: no such file ({target})")
    where = data.where.pop("extends")
    merged = merge(read(target, _seen + (path,)), data)
    merged.extends = str(target)
    merged.where.setdefault("extends", where)
    return merged


def check_keys(m, allowed, required=(), what="this mapping"):
    """Unknown or missing keys of Map `m` as one-line errors."""
    for key in m:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), [str(a) for a in allowed], 1)
            hint = f" (did you mean {close[0]!r}?)" if close else \
                f" (known: {', '.join(sorted(allowed))})"
            raise m.error(key, f"unknown key {key!r} in {what}{hint}")
    for key in required:
        if key not in m:
            raise m.error(None, f"{what} needs the key {key!r}")
