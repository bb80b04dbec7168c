"""scripts/offline-gpu without the network: the parts round trip (pack, split, stage one part at a
time, extract), install.sh on the host side, the import walk that decides what is shipped, and
build.py's unpack / sgl-kernel cut / keep-or-drop decisions, on small files built here."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT / "scripts" / "offline-gpu"
sys.path.insert(0, str(KIT))

import build  # noqa: E402
import import_closure as ic  # noqa: E402
import parts  # noqa: E402
import resolve_wheels  # noqa: E402

PART = 24 << 10  # bytes per part: three parts of the archive below


def make_site(root: Path) -> Path:
    site = root / "site"
    (site / "pkg" / "sub").mkdir(parents=True)
    (site / "pkg" / "__init__.py").write_text("x = 1\n" * 1000)
    (site / "pkg" / "sub" / "blob.bin").write_bytes(os.urandom(56 << 10))  # incompressible
    tool = site / "pkg" / "tool.sh"
    tool.write_text("#!/bin/sh\necho hi\n")
    tool.chmod(0o755)
    return site


def tree(d: Path) -> dict:
    return {str(p.relative_to(d)): (p.read_bytes(), os.access(p, os.X_OK))
            for p in sorted(d.rglob("*")) if p.is_file() and p.name != ".offline-gpu-installed"}


def test_parts_round_trip_one_part_at_a_time(tmp_path):
    site = make_site(tmp_path)
    out = tmp_path / "out"
    (out / "part9").mkdir(parents=True)  # left from an earlier, bigger build: must go
    manifest = parts.pack(str(site), str(out), PART, {"sglang": "0.5.16"}, preset=1)
    assert [p["folder"] for p in manifest["parts"]] == ["part1", "part2", "part3"]
    assert sorted(os.listdir(out)) == ["part1", "part2", "part3"]
    assert all(p["bytes"] <= PART for p in manifest["parts"]) and manifest["sglang"] == "0.5.16"
    assert sum(p["bytes"] for p in manifest["parts"]) == manifest["bytes"]

    stage, dest, log = tmp_path / "stage", tmp_path / "dest", []
    assert parts.add(str(stage), str(dest), [str(out / "part2")], log.append) == "waiting"
    assert "still needed: part1, part3" in log[-1] and not dest.exists()
    assert parts.add(str(stage), str(dest), [str(out / "part3")], log.append) == "waiting"
    assert parts.add(str(stage), str(dest), [str(out / "part1")], log.append) == "complete"
    assert tree(dest) == tree(site)  # bytes and the executable bit
    assert parts.add(str(stage), str(dest), [str(out / "part1")], log.append) == "installed"


def test_a_corrupt_part_is_named_and_another_build_restarts_the_stage(tmp_path):
    site = make_site(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    parts.pack(str(site), str(a), PART, preset=1)
    (site / "pkg" / "new.py").write_text("y = 2\n")
    parts.pack(str(site), str(b), PART, preset=1)
    stage, dest, log = tmp_path / "stage", tmp_path / "dest", []
    parts.add(str(stage), str(dest), [str(a / "part1")], log.append)
    assert parts.add(str(stage), str(dest), [str(b / "part1")], log.append) == "waiting"
    assert any("different build" in line for line in log)
    assert sorted(os.listdir(stage)) == ["manifest.json", "wheelhouse.tar.xz.01"]  # a's part is gone
    piece = b / "part2" / "wheelhouse.tar.xz.02"
    piece.write_bytes(piece.read_bytes()[:-1] + b"?")
    with pytest.raises(SystemExit, match="wheelhouse.tar.xz.02 is corrupt"):
        parts.add(str(stage), str(dest), [str(b / "part2")], log.append)


def test_install_sh_stages_then_installs_the_checkout(tmp_path):
    site_src = make_site(tmp_path)
    out = tmp_path / "out"
    parts.pack(str(site_src), str(out), PART, preset=1)
    env = dict(os.environ, OFFLINE_GPU_SITE=str(tmp_path / "site-dest"), OFFLINE_GPU_STAGE=str(tmp_path / "stage"),
               PYTHON=sys.executable, OFFLINE_GPU_CHECK="pkg sglang_eagle3_ext")
    run = lambda *a: subprocess.run(["bash", str(KIT / "install.sh"), *a], env=env, cwd=tmp_path,  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    first = run(str(out / "part1"))
    assert first.returncode == 0 and "still needed: part2, part3" in first.stdout, first.stdout + first.stderr
    assert run("--checkout-only").returncode == 1  # nothing unpacked yet
    done = run(str(out / "part2"), str(out / "part3"))
    assert done.returncode == 0, done.stdout + done.stderr
    dest = tmp_path / "site-dest"
    assert tree(site_src).items() <= tree(dest).items()
    assert (dest / "sitecustomize.py").exists()
    assert f"from {dest}/sglang_eagle3_ext" in done.stdout  # the installed copy, not the checkout
    (info,) = dest.glob("sglang_eagle3_ext-*.dist-info")
    assert "[sglang.srt.plugins]" in (info / "entry_points.txt").read_text()  # how SGLang finds us


def write(root: Path, rel: str, text: str = ""):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_import_walk_follows_module_level_imports_only(tmp_path):
    site = tmp_path / "site"
    write(site, "app/__init__.py", "from . import core\nfrom .util import helper\n")
    write(site, "app/core.py", "import needed\nfrom app import util\n"
                               "try:\n    import optional_missing\nexcept ImportError:\n    pass\n"
                               "if PLATFORM == 'npu':\n    import torch_npu\n"
                               "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import typing_only\n"
                               "def later():\n    import lazy_dep\n    import lazy_missing\n")
    write(site, "app/util.py", "import os\nhelper = 1\n")
    write(site, "needed/__init__.py", "from .deep import *\n")
    write(site, "needed/deep.py", "import hostpkg.sub\n")
    write(site, "lazy_dep/__init__.py")
    write(site, "app/extra.py", "import not_there\n")
    res = ic.closure(ic.ModuleIndex([str(site)]), ["app", "-app.extra"], host_modules={"hostpkg"})
    assert set(res["modules"]) == {"app", "app.core", "app.util", "needed", "needed.deep"}
    assert res["missing"] == {}
    assert set(res["conditional_missing"]) == {"torch_npu"}
    assert set(res["lazy_external"]) == {"lazy_dep", "lazy_missing"}
    assert ic.chain(res, "needed.deep").split(" <- ")[-1] in ("app.core", "app")
    # a required import that resolves nowhere fails; entry forms `pkg.*`, `a|b`, `mod?`
    res = ic.closure(ic.ModuleIndex([str(site)]), ["app.*", "nope|needed", "gone?"], host_modules={"hostpkg"})
    assert set(res["missing"]) == {"not_there"} and "app.extra" in res["modules"] and "needed" in res["modules"]


def fake_wheel(d: Path, name: str, version: str, files: dict, requires=()) -> Path:
    path = d / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as z:
        for rel, text in files.items():
            z.writestr(rel, text)
        z.writestr(f"{info}/METADATA", meta)
        z.writestr(f"{info}/RECORD", "".join(f"{f},,\n" for f in [*files, f"{info}/METADATA"]))
    return path


def test_build_unpacks_prunes_cuts_and_drops_what_nothing_loads(tmp_path):
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    wheels.mkdir()
    ws = [fake_wheel(wheels, "srv", "1.0", {"srv/__init__.py": "import used\n", "srv/tests/test_x.py": "",
                                             "srv.data/purelib/srv_extra.py": "", "srv.data/scripts/tool": ""},
                     ["used", "hostdist"]),
          fake_wheel(wheels, "used", "2.0", {"used/__init__.py": "def f():\n    import lazy_one\n"}, ["needed-by-used"]),
          fake_wheel(wheels, "needed_by_used", "1.0", {"needed_by_used/__init__.py": ""}),
          fake_wheel(wheels, "lazy_one", "1.0", {"lazy_one/__init__.py": ""}),
          fake_wheel(wheels, "unused", "1.0", {"unused/__init__.py": "", "unused/big.bin": "x" * 1000}),
          fake_wheel(wheels, "sglang_kernel", "0.4.5", {"sgl_kernel/__init__.py": "", "sgl_kernel/sm90/common_ops.abi3.so": "a",
                                                        "sgl_kernel/sm100/common_ops.abi3.so": "b",
                                                        "sgl_kernel/flash_ops.abi3.so": "fa3"})]
    removed = {}
    for w in ws:
        build.unpack(str(w), str(site), [("*/tests/*", ""), ("sgl_kernel/flash_ops.*", "")], removed)
    assert (site / "srv_extra.py").exists() and not (site / "tool").exists()  # purelib yes, scripts no
    assert removed == {"*/tests/*": 0, "sgl_kernel/flash_ops.*": 3} and not (site / "srv/tests").exists()
    assert build.cut_sgl_kernel(str(site), "90") == "sm90" and not (site / "sgl_kernel/sm100").exists()

    dists = build.distributions(str(site))
    host = {"hostdist": ["hostdist"]}
    keep, why, res = build.select(str(site), dists, ["srv", "sgl_kernel"], host, [])
    assert keep == {"srv", "used", "needed-by-used", "lazy-one", "sglang-kernel"}, why
    assert why["needed-by-used"] == "required by used" and why["lazy-one"].startswith("imported lazily by used")
    build.remove_dist(str(site), dists["unused"])
    assert not (site / "unused").exists() and not list(site.glob("unused-*"))


def test_kernel_cut_falls_back_to_the_generic_build(tmp_path):
    for arch, kept in (("100", "sm100"), ("89", "sm100"), ("90", "sm90")):
        base = tmp_path / arch / "sgl_kernel"
        for v in ("sm90", "sm100"):
            (base / v).mkdir(parents=True)
        assert build.cut_sgl_kernel(str(tmp_path / arch), arch) == kept
        assert sorted(os.listdir(base)) == [kept]


def test_kit_lists_parse():
    host = resolve_wheels.read_host_list(str(KIT / "device_has.txt"))
    assert {"torch", "triton", "transformers"} <= set(host) and host["pyyaml"] == ["yaml"]
    assert "cuda-toolkit" in host and host["cuda-toolkit"] == []
    wanted = build.read_list(str(KIT / "wheels.txt"))
    assert wanted and not {resolve_wheels.canonicalize_name(w.split("=")[0].split(">")[0]) for w in wanted} & set(host)
    for pattern, why in build.read_prune(str(KIT / "prune.txt")):
        assert why, f"prune.txt: {pattern} needs its reason"
    entries = build.read_list(str(KIT / "entries.txt"))
    assert "sglang.launch_server" in entries and "sglang_eagle3_ext.kernels.*" in entries
    json.dumps(entries)
