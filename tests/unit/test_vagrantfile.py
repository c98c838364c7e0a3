"""The Vagrantfile: a pinned Ubuntu 22.04 box of 2 vCPUs and 4 GiB, provisioned by the
project's install step and nothing else, then a smoke run (`lisp-lab doctor`, then one
short shipped scenario). Its provision lines are parsed here, command by command."""
import re
import shlex
from pathlib import Path

from topologies.model import load

ROOT = Path(__file__).resolve().parents[2]
VAGRANTFILE = ROOT / "Vagrantfile"
LAB_DIR = "/home/vagrant/lisp-lab"
INSTALL = ("bash scripts/install.sh", "make install")      # the project's install step


def code():
    """The Vagrantfile without its comments, continuation lines joined."""
    lines = [re.sub(r"(^|\s)#.*$", "", line).rstrip()
             for line in VAGRANTFILE.read_text().splitlines()]
    text = "\n".join(line for line in lines if line.strip())
    return re.sub(r",\s*\n\s*", ", ", text)


def provisions(text):
    """[(name, type, inline command)] of every `config.vm.provision` line."""
    out = []
    for line in text.splitlines():
        if "vm.provision" not in line:
            continue
        m = re.fullmatch(r'\s*config\.vm\.provision "([\w-]+)", type: "(\w+)", '
                         r'inline: "([^"#]*)"', line)
        assert m, f"Vagrantfile: a provision line this test cannot read: {line.strip()}"
        out.append(m.groups())
    return out


def commands(inline):
    """The commands of an inline script joined by &&, each split like a shell would."""
    return [shlex.split(c) for c in inline.split("&&")]


def check_provisioning(text):
    """[problem] of a Vagrantfile's provisioning ([] when it is the install step, then
    the smoke run, and nothing else)."""
    problems = []
    steps = provisions(text)
    if [s[:2] for s in steps] != [("install", "shell"), ("smoke", "shell")]:
        return [f"provisioners are {[s[:2] for s in steps]}, not install then smoke (shell)"]
    install, smoke = commands(steps[0][2]), commands(steps[1][2])
    if install[:1] != [["cd", LAB_DIR]] or [" ".join(c) for c in install[1:]] not in \
            [[i] for i in INSTALL]:
        problems.append(f"install provisioner runs {steps[0][2]!r}, not the install step")
    if smoke[:2] != [["cd", LAB_DIR], [".venv/bin/lisp-lab", "doctor"]] or len(smoke) != 3:
        problems.append(f"smoke provisioner runs {steps[1][2]!r}, not doctor then one run")
    else:
        run = smoke[2]
        if run[:2] != [".venv/bin/lisp-lab", "run"] or len(run) < 3 or \
                not run[2].startswith("topologies/labs/"):
            problems.append(f"smoke run {' '.join(run)!r} is not `lisp-lab run` of a shipped lab")
        elif not (ROOT / run[2]).is_file() or not load(ROOT / run[2]).timeline:
            problems.append(f"smoke run: {run[2]} is not a shipped scenario")
    for word in ("curl", "wget", "apt-get", "pip", "git clone"):
        if re.search(rf"\b{word}\b", text):
            problems.append(f"the Vagrantfile itself runs {word}")
    return problems


def test_the_box_is_pinned_ubuntu_2204_with_2_cpus_and_4_gib():
    text = code()
    assert re.search(r'vm\.box = "ubuntu/jammy64"', text)
    assert re.search(r'vm\.box_version = "\d+\.\d+\.\d+"', text)
    assert re.search(r"vb\.cpus = 2\b", text) and re.search(r"vb\.memory = 4096\b", text)
    assert re.search(rf'vm\.synced_folder "\.", "{LAB_DIR}"', text)


def test_provisioning_is_the_install_step_then_the_smoke_run():
    assert check_provisioning(code()) == []


def test_the_check_catches_other_provisioning():
    good = code()
    extra = good.replace("\nend", '\n  config.vm.provision "more", type: "shell", '
                                  'inline: "curl -sL x | sh"\nend')
    assert check_provisioning(extra)
    other = good.replace("bash scripts/install.sh", "apt-get install -y mininet")
    assert any("not the install step" in p for p in check_provisioning(other))
    no_doctor = good.replace(".venv/bin/lisp-lab doctor && ", "")
    assert any("not doctor then one run" in p for p in check_provisioning(no_doctor))
    not_shipped = good.replace("topologies/labs/demo-lisp-across-subnet.yaml",
                               "topologies/labs/two-dc.yaml")          # a lab, no timeline
    assert any("not a shipped scenario" in p for p in check_provisioning(not_shipped))


def test_the_readme_tells_how_to_use_the_vm():
    readme = (ROOT / "README.md").read_text()
    assert "vagrant up" in readme and "vagrant ssh" in readme
