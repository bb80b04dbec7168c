"""Which modules a set of entry modules imports when they load, read from source (no import runs).

The wheelhouse ships only what the GPU checks load, so this decides what is dropped and checks that
nothing loaded is missing. Statically, from the AST of every .py file reached:

* module-level imports (also inside module-level if / try / with / class bodies) are followed;
  function bodies are not (they run later, if at all: `lazy` imports, reported, not followed);
* an import inside `try:` whose handler catches ImportError (or Exception, or everything) is
  optional: a missing target is fine;
* an import under a module-level `if` is conditional (platform branches such as `if _is_npu:`): a
  missing target is reported but does not fail; `if TYPE_CHECKING:` blocks are skipped.

A module resolves to a .py file or package in one of the roots, an extension module there, the
standard library, or a top-level name the host already provides. Everything else that a required
(unconditional, non-optional) import names is `missing`.

    python import_closure.py --root SITE [--root name=DIR ...] --host-modules a,b --entry mod ...
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
from dataclasses import dataclass, field

EXT_SUFFIXES = (".abi3.so", ".so")
IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException", "OSError",
                 "RuntimeError", "AttributeError"}


@dataclass
class Imports:
    required: set = field(default_factory=set)
    conditional: set = field(default_factory=set)
    optional: set = field(default_factory=set)
    lazy: set = field(default_factory=set)


class ModuleIndex:
    """Dotted module name -> file, over several roots. A root is a site directory (its children
    are top-level names) or `name=DIR` (DIR is the package `name`, as setup.py's package_dir)."""

    def __init__(self, roots):
        self.sites, self.mapped = [], {}
        for r in roots:
            if "=" in r:
                name, d = r.split("=", 1)
                self.mapped[name] = os.path.abspath(d)
            else:
                self.sites.append(os.path.abspath(r))

    def _dirs_for(self, parts):
        """Directories that could hold module parts[-1] (the package path of its parent)."""
        for n in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:n])
            if prefix in self.mapped:
                yield os.path.join(self.mapped[prefix], *parts[n:-1])
                return
        for s in self.sites:
            yield os.path.join(s, *parts[:-1])

    def find(self, name):
        """(kind, path) with kind 'py', 'pkg', 'ns' (namespace package), 'ext'; or None."""
        if name in self.mapped:
            init = os.path.join(self.mapped[name], "__init__.py")
            return ("pkg", init) if os.path.exists(init) else ("ns", self.mapped[name])
        parts = name.split(".")
        ns = None
        for d in self._dirs_for(parts):
            base = os.path.join(d, parts[-1])
            if os.path.isfile(base + ".py"):
                return "py", base + ".py"
            if os.path.isfile(os.path.join(base, "__init__.py")):
                return "pkg", os.path.join(base, "__init__.py")
            if os.path.isdir(d):
                for f in os.listdir(d):
                    if f.startswith(parts[-1] + ".") and f.endswith(EXT_SUFFIXES):
                        return "ext", os.path.join(d, f)
            if os.path.isdir(base) and ns is None:
                ns = ("ns", base)
        return ns


    def children(self, name):
        """Dotted names of the direct submodules of package `name`."""
        found = self.find(name)
        if found is None or found[0] not in ("pkg", "ns"):
            raise ValueError(f"{name}.* : {name} is not a package here")
        d = os.path.dirname(found[1]) if found[0] == "pkg" else found[1]
        out = set()
        for f in os.listdir(d):
            if f.endswith(".py") and f != "__init__.py":
                out.add(f"{name}.{f[:-3]}")
            elif os.path.isfile(os.path.join(d, f, "__init__.py")):
                out.add(f"{name}.{f}")
        return sorted(out)

    def expand(self, entries):
        """Entry syntax: `mod`, `pkg.*` (its direct submodules), `a|b` (the first that exists:
        a name that moved between versions), `mod?` (only if it exists), `-mod` (leave out)."""
        out, skip = [], {e[1:] for e in entries if e.startswith("-")}
        for e in entries:
            if e.startswith("-"):
                continue
            if e.endswith(".*"):
                out += self.children(e[:-2])
            elif "|" in e or e.endswith("?"):
                alts = e.rstrip("?").split("|")
                hit = [a for a in alts if self.find(a)]
                out += hit[:1] if hit or e.endswith("?") else alts[:1]  # none: reported missing
            else:
                out.append(e)
        return [e for e in out if e not in skip]


def _catches_import_error(handlers):
    for h in handlers:
        if h.type is None:
            return True
        names = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
        for n in names:
            if isinstance(n, ast.Name) and n.id in IMPORT_ERRORS:
                return True
            if isinstance(n, ast.Attribute) and n.attr in IMPORT_ERRORS:
                return True
    return False


def _suppresses_import_error(node):
    """`with contextlib.suppress(ImportError):`"""
    for item in node.items:
        call = item.context_expr
        if isinstance(call, ast.Call):
            fn = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
            if fn == "suppress" and any(getattr(a, "id", getattr(a, "attr", "")) in IMPORT_ERRORS
                                        for a in call.args):
                return True
    return False


def _is_type_checking(test):
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(node, module, is_pkg):
    """Absolute dotted names an Import / ImportFrom node may load (from-imports: the module and
    each name as a possible submodule)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        pkg = module.split(".") if is_pkg else module.split(".")[:-1]
        pkg = pkg[: len(pkg) - (node.level - 1)] if node.level > 1 else pkg
        base = ".".join(pkg + ([base] if base else []))
    return [base] + [f"{base}.{a.name}" for a in node.names if a.name != "*"]


def scan(source, module, is_pkg) -> Imports:
    out = Imports()
    tree = ast.parse(source)

    def visit(body, kind, in_func):
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets = _targets(node, module, is_pkg)
                getattr(out, "lazy" if in_func else kind).update(t for t in targets if t)
                continue
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(node.body, kind, True)
            elif isinstance(node, ast.ClassDef):
                visit(node.body, kind, in_func)
            elif isinstance(node, ast.If):
                if _is_type_checking(node.test):
                    continue
                sub = kind if kind == "optional" else "conditional"
                visit(node.body, sub, in_func)
                visit(node.orelse, sub, in_func)
            elif isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
                sub = "optional" if _catches_import_error(node.handlers) else kind
                visit(node.body, sub, in_func)
                for h in node.handlers:  # a fallback import runs only when the first one failed
                    visit(h.body, sub, in_func)
                visit(node.orelse, kind, in_func)
                visit(node.finalbody, kind, in_func)
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                visit(node.body, "optional" if _suppresses_import_error(node) else kind, in_func)
            elif isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
                visit(node.body, kind, in_func)
                visit(getattr(node, "orelse", []), kind, in_func)

    visit(tree.body, "required", False)
    return out


def closure(index: ModuleIndex, entries, host_modules=(), stdlib=None):
    """Walk module-level imports from `entries`. Returns a dict:
    modules: name -> (kind, path) loaded; missing: {name: [importers]} of required imports that
    resolve nowhere; conditional_missing / lazy_external: the same for conditional imports and
    for function-level imports of top-level packages that are not loaded (to review)."""
    stdlib = set(stdlib if stdlib is not None else sys.stdlib_module_names) | {"__main__"}
    host = set(host_modules)
    loaded, missing, cond_missing, lazy_ext, why = {}, {}, {}, {}, {}
    # strongest first: the whole required closure is walked before any conditional import, so a
    # module reached both ways is scanned as required
    queues = {"required": [(e, "entry") for e in index.expand(entries)], "conditional": [], "optional": []}
    lazy_seen = []

    def external(name):
        top = name.split(".")[0]
        return top in stdlib or top in host

    while any(queues.values()):
        kind = next(k for k, q in queues.items() if q)
        name, importer = queues[kind].pop()
        if name in loaded or external(name):
            continue
        found = index.find(name)
        if found is None:
            parent = name.rpartition(".")[0]
            # `from pkg import attr`: attr is not a module; fine if pkg itself resolves
            if importer != "entry" and parent and (parent in loaded or index.find(parent) or external(parent)):
                continue
            if kind == "required":
                missing.setdefault(name, []).append(importer)
            elif kind == "conditional":
                cond_missing.setdefault(name, []).append(importer)
            continue
        loaded[name] = found
        why[name] = importer
        parts = name.split(".")
        for i in range(1, len(parts)):  # importing a.b.c runs a and a.b first
            queues[kind].append((".".join(parts[:i]), name))
        if found[0] not in ("py", "pkg"):
            continue
        with open(found[1], "rb") as f:
            src = f.read()
        try:
            imps = scan(src, name, found[0] == "pkg")
        except SyntaxError as e:
            missing.setdefault(name, []).append(f"syntax error: {e}")
            continue
        # what a conditional / optional module pulls in is at most as strong as it
        queues[kind] += [(t, name) for t in imps.required]
        queues["conditional" if kind == "required" else kind] += [(t, name) for t in imps.conditional]
        queues["optional"] += [(t, name) for t in imps.optional]
        lazy_seen += [(t, name) for t in imps.lazy]

    for t, importer in lazy_seen:
        top = t.split(".")[0]
        if not external(t) and top not in {m.split(".")[0] for m in loaded}:
            lazy_ext.setdefault(top, set()).add(importer)
    return {"modules": loaded, "missing": missing, "conditional_missing": cond_missing,
            "lazy_external": {k: sorted(v) for k, v in lazy_ext.items()}, "why": why}


def chain(result, name):
    """entry -> ... -> name: why `name` is loaded."""
    out, why = [name], result["why"]
    while out[-1] in why and why[out[-1]] != "entry" and len(out) < 50:
        out.append(why[out[-1]])
    return " <- ".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", action="append", default=[], help="site dir, or name=DIR")
    ap.add_argument("--host-modules", default="", help="comma-separated top-level names the host has")
    ap.add_argument("--entry", nargs="+", required=True)
    args = ap.parse_args(argv)
    res = closure(ModuleIndex(args.root), args.entry, [m for m in args.host_modules.split(",") if m])
    tops = sorted({m.split(".")[0] for m in res["modules"]})
    print(json.dumps({"top_level": tops, "modules": len(res["modules"]), "missing": res["missing"],
                      "conditional_missing": res["conditional_missing"],
                      "lazy_external": res["lazy_external"]}, indent=1))
    return 1 if res["missing"] else 0


if __name__ == "__main__":
    sys.exit(main())
