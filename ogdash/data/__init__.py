"""Datasets: one type, and loaders for built-in and your own data."""
from ogdash.data.dataset import Dataset, Splits, make_dataset
from ogdash.data.files import load_file, load_splits, resolve_under
from ogdash.data.images import digits, mnist5k
from ogdash.data.noise import inject_noise
from ogdash.data.spec import DataSpec
from ogdash.data.synthetic import FLIP_MODES, blobs, moons

BUILTIN = {"blobs": blobs, "moons": moons, "digits": digits, "mnist5k": mnist5k}

__all__ = ["DataSpec", "Dataset", "Splits", "make_dataset", "load_file", "load_splits", "resolve_under",
           "digits", "mnist5k", "inject_noise", "blobs", "moons", "FLIP_MODES", "BUILTIN"]
