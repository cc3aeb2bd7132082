"""Why a sample was flagged, in terms a reviewer can check: its nearest neighbours from the given and the
suggested class, where the flags fall between classes (given -> suggested counts), and which of a feature
row's values are unusual for its given class. Plain functions over arrays, chunked where they touch every
sample; ``ogdash.pipeline.Scan`` calls them and keeps their results as stages."""
from ogdash.explain.neighbours import nearest_in_classes, row_norms
from ogdash.explain.pairs import flag_pairs, top_pairs
from ogdash.explain.zscores import ClassStats, class_stats, unusual_features

__all__ = ["nearest_in_classes", "row_norms", "flag_pairs", "top_pairs", "ClassStats", "class_stats",
           "unusual_features"]
