"""Build an offline wheelhouse of SGLang for a GPU host without network, in parts of <= 56 MiB.

    python scripts/offline-gpu/build.py [--python 3.12] [--sglang 0.5.16] [--arch 90] [--out .dev-whl]

On a machine with access to PyPI (any OS able to run pip; nothing is imported from the wheels):

1. downloads SGLang and the sgl-kernel / flashinfer versions its METADATA pins (deep-gemm with
   --with-deep-gemm), plus the pure-Python wheels of wheels.txt with their dependencies, except
   what the host has (device_has.txt);
2. unpacks them into one site directory, keeps sgl-kernel's ops for the target architecture only,
   removes what nothing loads at run time (prune.txt) and strips debug info from shared libraries;
3. walks the imports of what the GPU checks load (entries.txt, import_closure.py): fails if a
   required module is missing, and drops every downloaded distribution nothing reaches;
4. packs the directory into one xz archive cut into OUT/part1..N (parts.py), and writes
   OUT/build_report.json (what was kept / dropped and why, sizes).

On the host: `bash scripts/offline-gpu/install.sh OUT/partK ...` (see docs/gpu.md).
"""

from __future__ import annotations

import argparse
import email.parser
import fnmatch
import glob
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import import_closure  # noqa: E402
import parts  # noqa: E402
import resolve_wheels  # noqa: E402

# SGLang's compiled companions, by the names its METADATA has used for them
KERNEL_DISTS = ("sglang-kernel", "sgl-kernel", "flashinfer-python", "sgl-deep-gemm")
# Left out unless asked for: SGLang imports deep_gemm only inside a try (deep_gemm_wrapper.configurer)
# and uses it, JIT-compiled with nvcc, for FP8 block GEMMs when SGLANG_ENABLE_JIT_DEEPGEMM is on;
# without it SGLang takes its Triton / CUTLASS paths. None of the GPU checks runs an FP8 linear.
OPTIONAL_COMPANIONS = ("sgl-deep-gemm",)
# our package's directories as setup.py maps them, and the test / benchmark roots
PROJECT_ROOTS = ["sglang_eagle3_ext=sglang_eagle3_ext", "sglang_eagle3_ext.patches=patches",
                 "sglang_eagle3_ext.kernels=kernels", "sglang_eagle3_ext.launch=launch", "tests", "benchmarks"]


def read_list(path):
    """Non-comment lines, first field."""
    return [l.split("#", 1)[0].split()[0] for l in open(path) if l.split("#", 1)[0].strip()]


def read_prune(path):
    """prune.txt -> [(pattern, why)]."""
    out = []
    for line in open(path):
        if line.strip() and not line.startswith("#"):
            pattern, _, why = line.strip().partition(" ")
            out.append((pattern, why.strip()))
    return out


def companion_pins(sglang_wheel, env, with_optional=False):
    """The sgl-kernel / flashinfer (/ deep-gemm) requirements SGLang's METADATA pins (no extras)."""
    pins = []
    for r in resolve_wheels.requires(sglang_wheel, env):
        name = canonicalize_name(r.name)
        if name in KERNEL_DISTS and (with_optional or name not in OPTIONAL_COMPANIONS):
            pins.append(f"{name}{r.specifier}")
    return pins


# ------------------------------------------------------------------ site directory

def unpack(wheel, site, rules=(), removed=None):
    """Install a wheel's files into `site` as pip --target would (purelib / platlib at the top;
    scripts, headers and data left out), except files matching a prune rule (their bytes are
    added up in `removed`). Returns the canonical distribution name."""
    name = canonicalize_name(parse_wheel_filename(os.path.basename(wheel))[0])
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            path = info.filename
            head, _, rest = path.partition("/")
            if head.endswith(".data"):
                kind, _, rest = rest.partition("/")
                if kind not in ("purelib", "platlib") or not rest:
                    continue
                path = rest
            if info.is_dir():
                continue
            hit = next((p for p, _ in rules if fnmatch.fnmatch(path, p)), None)
            if hit:
                removed[hit] = removed.get(hit, 0) + info.file_size
                continue
            dest = os.path.join(site, path)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with z.open(info) as src, open(dest, "wb") as dst:
                shutil.copyfileobj(src, dst)
            if (info.external_attr >> 16) & 0o111:
                os.chmod(dest, 0o755)
    return name


def distributions(site):
    """{dist: {"dir": dist-info dir, "tops": top-level names, "files": [paths], "requires": [...]}}"""
    out = {}
    for info in glob.glob(os.path.join(site, "*.dist-info")):
        meta = email.parser.Parser().parse(open(os.path.join(info, "METADATA"), encoding="utf-8"))
        files = []
        record = os.path.join(info, "RECORD")
        if os.path.exists(record):
            files = [l.split(",")[0] for l in open(record, encoding="utf-8") if l.strip()]
        tops = set()
        for f in files:
            first = f.split("/")[0]
            if first.endswith((".dist-info", ".data")) or first == "..":
                continue
            tops.add(first[:-3] if first.endswith(".py") else first.split(".")[0])
        out[canonicalize_name(meta["Name"])] = {"dir": os.path.basename(info), "tops": tops, "files": files,
                                                "version": meta["Version"],
                                                "requires": meta.get_all("Requires-Dist") or []}
    return out


def remove_dist(site, dist):
    for f in dist["files"]:
        path = os.path.join(site, f)
        if os.path.isfile(path) or os.path.islink(path):
            os.remove(path)
    shutil.rmtree(os.path.join(site, dist["dir"]), ignore_errors=True)
    for d, _, _ in os.walk(site, topdown=False):  # leave no empty folders behind
        if d != site and not os.listdir(d):
            os.rmdir(d)


def cut_sgl_kernel(site, arch):
    """Keep sgl-kernel's common_ops build for `arch` only (its loader takes sm90/ on compute
    capability 9.0 and sm100/ for everything else). Returns the folder kept."""
    base = os.path.join(site, "sgl_kernel")
    variants = sorted(d for d in os.listdir(base) if d.startswith("sm") and d[2:].isdigit()) if os.path.isdir(base) else []
    if not variants:
        return None
    keep = f"sm{arch}" if f"sm{arch}" in variants else "sm100" if "sm100" in variants else variants[-1]
    for v in variants:
        if v != keep:
            shutil.rmtree(os.path.join(base, v))
    return keep


def strip_debug(site):
    """`strip --strip-debug` every shared library (debug sections only: symbols, CUDA fatbins and
    everything the loader needs stay). Returns bytes saved (0 without binutils)."""
    strip = shutil.which("strip")
    if not strip:
        print("note: no `strip` here; shared libraries keep their debug info (bigger parts)")
        return 0
    saved = 0
    for d, _, files in os.walk(site):
        for f in files:
            if ".so" in f and not os.path.islink(os.path.join(d, f)):
                path = os.path.join(d, f)
                before = os.path.getsize(path)
                if subprocess.run([strip, "--strip-debug", path], capture_output=True).returncode == 0:
                    saved += before - os.path.getsize(path)
    return saved


def project_roots():
    """PROJECT_ROOTS as absolute paths (`name=DIR` or a site directory)."""
    out = []
    for r in PROJECT_ROOTS:
        name, eq, d = r.rpartition("=")
        out.append(f"{name}={os.path.join(ROOT, d)}" if eq else os.path.join(ROOT, d))
    return out


def host_modules(host):
    return {m for mods in host.values() for m in mods}


def select(site, dists, entries, host, roots):
    """Which distributions the checks need: those whose modules the entries reach at module level,
    those a reached module imports lazily, and their requirements. Returns (keep, why, closure)."""
    index = import_closure.ModuleIndex([site] + roots)
    res = import_closure.closure(index, entries, host_modules(host))
    loaded_tops = {m.split(".")[0] for m in res["modules"]}
    lazy_tops = set(res["lazy_external"])
    why = {}
    for name, d in dists.items():
        if d["tops"] & loaded_tops:
            top = sorted(d["tops"] & loaded_tops)[0]
            why[name] = "loaded: " + import_closure.chain(res, top)
        elif d["tops"] & lazy_tops:
            top = sorted(d["tops"] & lazy_tops)[0]
            why[name] = "imported lazily by " + res["lazy_external"][top][0]
    env = resolve_wheels.host_env(PYTHON)
    todo = [n for n in why if n != "sglang"]  # SGLang's own requirements are what we cut down
    while todo:
        n = todo.pop()
        for line in dists[n]["requires"]:
            r = Requirement(line)
            q = canonicalize_name(r.name)
            if q in dists and q not in why and (r.marker is None or r.marker.evaluate(env)):
                why[q] = f"required by {n}"
                todo.append(q)
    return set(why), why, res


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


PYTHON = "3.12"


def main(argv=None):
    global PYTHON
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default="3.12", help="the host's Python (major.minor)")
    ap.add_argument("--sglang", default="0.5.16", help="SGLang version (its torch pin must match the host's)")
    ap.add_argument("--arch", default="90", help="compute capability, e.g. 90 (H100/H200), 100 (B200)")
    ap.add_argument("--out", default=os.path.join(ROOT, ".dev-whl"))
    ap.add_argument("--part-mib", type=float, default=56)
    ap.add_argument("--host-list", default=os.path.join(HERE, "device_has.txt"))
    ap.add_argument("--wheels", default=os.path.join(HERE, "wheels.txt"))
    ap.add_argument("--entries", default=os.path.join(HERE, "entries.txt"))
    ap.add_argument("--prune", default=os.path.join(HERE, "prune.txt"))
    ap.add_argument("--with-deep-gemm", action="store_true",
                    help="also ship DeepGEMM (SGLang's FP8 block GEMMs; JIT-compiles with nvcc on the host)")
    ap.add_argument("--keep-all", action="store_true",
                    help="no pruning, no dropping (bigger; for hosts without a size limit)")
    ap.add_argument("--keep-site", action="store_true", help="leave OUT/site for inspection")
    args = ap.parse_args(argv)
    PYTHON = args.python
    t0 = time.time()
    out = os.path.abspath(args.out)
    dl, site = os.path.join(out, "dl", f"py{args.python}"), os.path.join(out, "site")
    env = resolve_wheels.host_env(args.python)
    host = resolve_wheels.read_host_list(args.host_list)

    print(f"downloading sglang=={args.sglang} for Python {args.python} into {dl}", flush=True)
    sglang_whl = resolve_wheels.pip_download(f"sglang=={args.sglang}", dl, args.python)
    pins = companion_pins(sglang_whl, env, args.with_deep_gemm)
    wheels = [sglang_whl] + [resolve_wheels.pip_download(p, dl, args.python) for p in pins]
    wanted = [l for l in read_list(args.wheels)]
    wheels += resolve_wheels.resolve(os.path.join(dl, "pure"), wanted, args.python, set(host) | set(KERNEL_DISTS))
    downloaded = sum(os.path.getsize(w) for w in wheels)
    print(f"{len(wheels)} wheels, {downloaded / 2**20:.0f} MiB ({', '.join(pins)})", flush=True)

    shutil.rmtree(site, ignore_errors=True)
    os.makedirs(site)
    rules, removed = ([] if args.keep_all else read_prune(args.prune)), {}
    for w in wheels:
        unpack(w, site, rules, removed)
    report = {"python": args.python, "sglang": args.sglang, "arch": args.arch, "companions": pins,
              "downloaded_mib": round(downloaded / 2**20, 1),
              "pruned_mib": {p: round(b / 2**20, 2) for p, b in removed.items()}}
    if not args.keep_all:
        report["sgl_kernel_ops_kept"] = cut_sgl_kernel(site, args.arch)
        report["stripped_debug_mib"] = round(strip_debug(site) / 2**20, 1)

    entries = read_list(args.entries)
    dists = distributions(site)
    keep, why, res = select(site, dists, entries, host, project_roots())
    if res["missing"]:
        lines = [f"  {m} (imported by {', '.join(sorted(set(by))[:3])})" for m, by in sorted(res["missing"].items())]
        raise SystemExit("modules the GPU checks import are in neither the wheelhouse nor the host list "
                         "(add their distribution to wheels.txt, or to device_has.txt if the host has it):\n"
                         + "\n".join(lines))
    dropped = {}
    for name in sorted(set(dists) - keep):
        if args.keep_all:
            continue
        d = dists[name]
        before = dir_bytes(site)
        remove_dist(site, d)
        dropped[name] = round((before - dir_bytes(site)) / 2**20, 2)
    report["kept"] = {n: {"version": dists[n]["version"], "why": why.get(n, "--keep-all")}
                      for n in sorted(set(dists) - set(dropped))}
    report["dropped_mib"] = dropped
    report["site_mib"] = round(dir_bytes(site) / 2**20, 1)
    report["modules_reached"] = len(res["modules"])

    print(f"site: {report['site_mib']} MiB, {len(report['kept'])} distributions "
          f"({len(dropped)} dropped); compressing (xz -9e, a few minutes)", flush=True)
    meta = {k: report[k] for k in ("python", "sglang", "arch")}
    manifest = parts.pack(site, out, int(args.part_mib * 2**20), meta)
    report["parts"] = [{"folder": p["folder"], "mib": round(p["bytes"] / 2**20, 2)} for p in manifest["parts"]]
    report["archive_mib"] = round(manifest["bytes"] / 2**20, 2)
    report["build_seconds"] = round(time.time() - t0)
    if not args.keep_site:
        shutil.rmtree(site)
    with open(os.path.join(out, "build_report.json"), "w") as f:
        json.dump(report, f, indent=1)
    for p in report["parts"]:
        print(f"{p['folder']}: {p['mib']} MiB")
    print(f"{len(report['parts'])} part(s) in {out} ({report['build_seconds']} s); "
          f"details in {os.path.join(out, 'build_report.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
