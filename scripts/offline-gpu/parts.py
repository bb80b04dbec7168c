"""Pack a site directory into one .tar.xz split into parts of at most N bytes, and put it back
together on the host. Standard library only: the host side runs with nothing but python3.

Each part folder holds its slice of the archive and the whole manifest (sizes and sha256 of every
part and of the archive), so parts can arrive one device call at a time, in any order:

    python3 parts.py pack SITE OUT --part-bytes 58720256 [--meta k=v ...]   -> OUT/part1..N
    python3 parts.py add STAGE SITE PART_DIR...    copy + check parts; extract once all are in
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import os
import shutil
import sys
import tarfile

ARCHIVE = "wheelhouse.tar.xz"
MANIFEST = "manifest.json"
CHUNK = 1 << 20


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _solid_order(site):
    """Relative paths, similar files next to each other (by extension, then name): the xz window
    then sees the many near-identical .py / header files together."""
    paths = []
    for d, dirs, files in os.walk(site):
        dirs.sort()
        for f in files:
            rel = os.path.relpath(os.path.join(d, f), site)
            paths.append(rel)
    return sorted(paths, key=lambda p: (os.path.splitext(p)[1], os.path.basename(p), p))


def write_archive(site, archive, preset=9 | lzma.PRESET_EXTREME):
    """Deterministic tar (sorted, mtime / owner zeroed) of `site`, xz-compressed."""
    def clean(info):
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        return info

    with lzma.open(archive, "wb", preset=preset) as xz, tarfile.open(fileobj=xz, mode="w",
                                                                     format=tarfile.PAX_FORMAT) as tar:
        for rel in _solid_order(site):
            tar.add(os.path.join(site, rel), arcname=rel, recursive=False, filter=clean)


def split(archive, out_dir, part_bytes, meta=None):
    """archive -> out_dir/part1..N/<archive name>.NN + manifest.json in each. Returns the manifest."""
    if part_bytes < 4096:
        raise ValueError(f"part size {part_bytes} is below 4096 bytes")
    size = os.path.getsize(archive)
    count = max(1, -(-size // part_bytes))
    name = os.path.basename(archive)
    parts = []
    with open(archive, "rb") as src:
        for i in range(1, count + 1):
            folder = os.path.join(out_dir, f"part{i}")
            os.makedirs(folder, exist_ok=True)
            piece = os.path.join(folder, f"{name}.{i:02d}")
            left, h = min(part_bytes, size - (i - 1) * part_bytes), hashlib.sha256()
            with open(piece, "wb") as dst:
                while left:
                    block = src.read(min(CHUNK, left))
                    if not block:
                        raise IOError(f"{archive} ended early")
                    dst.write(block)
                    h.update(block)
                    left -= len(block)
            parts.append({"folder": f"part{i}", "file": os.path.basename(piece),
                          "bytes": os.path.getsize(piece), "sha256": h.hexdigest()})
    manifest = {"archive": name, "bytes": size, "sha256": _sha256(archive), "parts": parts,
                **(meta or {})}
    for p in parts:
        with open(os.path.join(out_dir, p["folder"], MANIFEST), "w") as f:
            json.dump(manifest, f, indent=1)
    return manifest


def pack(site, out_dir, part_bytes, meta=None, preset=9 | lzma.PRESET_EXTREME):
    os.makedirs(out_dir, exist_ok=True)
    for old in os.listdir(out_dir):  # a stale part3 from an earlier, bigger build must not linger
        if old.startswith("part") and old[4:].isdigit():
            shutil.rmtree(os.path.join(out_dir, old))
    archive = os.path.join(out_dir, ARCHIVE)
    write_archive(site, archive, preset)
    try:
        return split(archive, out_dir, part_bytes, meta)
    finally:
        os.remove(archive)


class _Joined(io.RawIOBase):
    """The parts read back to back as one file."""

    def __init__(self, paths):
        self.paths, self.f = list(paths), None

    def readable(self):
        return True

    def readinto(self, buf):
        while True:
            if self.f is None:
                if not self.paths:
                    return 0
                self.f = open(self.paths.pop(0), "rb")
            n = self.f.readinto(buf)
            if n:
                return n
            self.f.close()
            self.f = None


def _check_part(path, entry):
    if not os.path.exists(path):
        return f"{entry['file']} missing"
    if os.path.getsize(path) != entry["bytes"]:
        return f"{entry['file']} has {os.path.getsize(path)} bytes, expected {entry['bytes']}"
    if _sha256(path) != entry["sha256"]:
        return f"{entry['file']} is corrupt (sha256 differs)"
    return None


def add(stage, site, part_dirs, log=print):
    """Copy the parts in `part_dirs` into `stage`; once every part of the manifest is there (and
    checks out), extract the archive into `site`. Returns 'complete', 'installed' (already done
    earlier) or 'waiting'. A part of another build than the one staged replaces the stage."""
    os.makedirs(stage, exist_ok=True)
    staged_manifest = os.path.join(stage, MANIFEST)
    for d in part_dirs:
        with open(os.path.join(d, MANIFEST)) as f:
            manifest = json.load(f)
        if os.path.exists(staged_manifest):
            with open(staged_manifest) as f:
                if json.load(f)["sha256"] != manifest["sha256"]:
                    log(f"{d}: a different build than the one staged in {stage}; starting over")
                    shutil.rmtree(stage)
                    os.makedirs(stage)
        shutil.copy(os.path.join(d, MANIFEST), staged_manifest)
        for entry in manifest["parts"]:
            src = os.path.join(d, entry["file"])
            if os.path.exists(src):
                problem = _check_part(src, entry)
                if problem:
                    raise SystemExit(f"{d}: {problem}: copy this part again")
                shutil.copy(src, os.path.join(stage, entry["file"]))
    with open(staged_manifest) as f:
        manifest = json.load(f)
    done = os.path.join(site, ".offline-gpu-installed")
    if os.path.exists(done) and open(done).read().strip() == manifest["sha256"]:
        log(f"{site}: this wheelhouse is already installed")
        return "installed"
    status = [(e, _check_part(os.path.join(stage, e["file"]), e)) for e in manifest["parts"]]
    waiting = [e["folder"] for e, problem in status if problem]
    if waiting:
        log(f"staged {len(status) - len(waiting)}/{len(status)} parts in {stage}; still needed: "
            + ", ".join(waiting) + " (carry it in the next call, the machine is kept only while warm)")
        return "waiting"
    os.makedirs(site, exist_ok=True)
    joined = io.BufferedReader(_Joined([os.path.join(stage, e["file"]) for e in manifest["parts"]]), CHUNK)
    with lzma.open(joined) as xz, tarfile.open(fileobj=xz, mode="r|") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(site, filter="data")
        else:  # Python < 3.12: our own archive, paths are relative
            tar.extractall(site)
    with open(done, "w") as f:
        f.write(manifest["sha256"] + "\n")
    log(f"extracted {manifest['bytes'] / 2**20:.1f} MiB archive ({len(status)} parts) into {site}")
    return "complete"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("site")
    p.add_argument("out")
    p.add_argument("--part-bytes", type=int, default=56 << 20)
    p.add_argument("--meta", nargs="*", default=[], help="k=v pairs stored in the manifest")
    a = sub.add_parser("add")
    a.add_argument("stage")
    a.add_argument("site")
    a.add_argument("parts", nargs="+")
    args = ap.parse_args(argv)
    if args.cmd == "pack":
        manifest = pack(args.site, args.out, args.part_bytes, dict(kv.split("=", 1) for kv in args.meta))
        for e in manifest["parts"]:
            print(f"{e['folder']}: {e['bytes'] / 2**20:.1f} MiB")
        return 0
    return 0 if add(args.stage, args.site, args.parts) in ("complete", "installed") else 3


if __name__ == "__main__":
    sys.exit(main())
