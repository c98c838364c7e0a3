"""Packaging for the LISP mobility lab."""
from setuptools import find_packages, setup

setup(
    name="lisp-lab",
    version="0.1.0",
    description="A Mininet lab that teaches LISP and VM mobility between data centers",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["lab", "lab.*", "nodes", "nodes.*",
                                    "topologies", "topologies.*",
                                    "captures", "captures.*"]),
    install_requires=[
        "scapy>=2.5",
        "pyroute2>=0.7",
        "matplotlib>=3.5",
        "pyyaml>=5.4",                  # lab files (topologies/labfile.py)
        "tomli>=2; python_version < \"3.11\"",
    ],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6", "pytest-timeout>=2"],
    },
    entry_points={"console_scripts": ["lisp-lab = lab.cli:main"]},
)
