"""The synthetic demo page's longer prose: captions that depend on the case, and what to conclude."""
from __future__ import annotations

INTRO = (
    "The paper's toy experiment, rerun in your browser. A few training labels are flipped on purpose, a small "
    "model is trained on the noisy labels, and every method gives each training sample a score "
    "(**higher = more detrimental**). Each method flags the same number of samples, the *budget*. Because we "
    "know which labels were flipped, we can count how many flags are right, and retrain without the flagged "
    "samples to see what removing them is worth on an untouched test set."
)

CONCLUSIONS = (
    "- **Flipped samples are outliers in gradient space.** A flipped sample is fitted badly, so its loss gradient "
    "is long and points away from the crowd: in panel D/H most crosses sit apart, and detectors that never form "
    "a Hessian (IsolationForest, or just the gradient's norm) flag most of them.\n"
    "- **On the blobs almost every score finds the far-side flips**, influence included: a convex model is the "
    "easy case. **On the half-moons the scores that weigh a sample against the whole training set's gradient** "
    "(Eq. 1 with the exact Hessian, TracIn, LiSSA, DataInf; panel G) miss most flips, and trimming by them can "
    "lower test accuracy. Scores that look at each sample's own gradient (its size, its self-influence, how "
    "isolated it is) find most of them.\n"
    "- **Which labels the label-quality baselines see matters.** Fed the given labels they are as good as the "
    "gradient detectors on these toy problems; fed the model's own predictions, as in the paper's released code, "
    "they flag uncertain samples near the boundary rather than the flipped ones.\n"
    "- **Read the spread, not one run.** A trim moves test accuracy by a few points at most here, about as much as "
    "changing the seed; use several seeds before trusting a difference. Uniform flips are harder for every method, "
    "and the paper's 2-2-2-1 net collapses on some seeds (a warning says so)."
)


def figure1_caption(result, letters: str, detector_name: str) -> str:
    """What panels C and D (or G and H) show for this case, the Hessian's damping included."""
    damping = (f" The Hessian is not positive definite here (eigenvalues {result.hessian_eigen_range[0]:.3g} to "
               f"{result.hessian_eigen_range[1]:.3g}), so {result.hessian_damping:.3g}·I is added before inverting "
               "it." if result.hessian_damping else "")
    return (
        f"{letters[2]}: influence of Eq. (1) with the exact Hessian over all of the model's parameters and the "
        f"training set as the reference set; the dashed line is where the budget would cut.{damping} "
        f"{letters[3]}: {result.layout_note}. Orange = flagged by {detector_name}; × = truly flipped. "
        "OneClassSVM learns what normal looks like from 100 extra clean samples drawn from the same generator "
        "with another seed (never the training or test set)."
    )


def table1_caption(dataset: str, seeds: list[int], n_flagged: int, predicted: bool) -> str:
    """How Table 1 was measured, and how it compares with the paper's published table."""
    published = ("The two 'Published' columns are the paper's own Table 1 (half-moons, its 2-2-2-1 MLP, its "
                 "own data, one run); they are quoted, not measured here, and are not comparable number for number. "
                 "The paper has no OneClassSVM row in this experiment."
                 if dataset == "moons" else
                 "The paper publishes no table for the blobs case, so its columns say 'not published'.")
    return (
        f"Measured on {len(seeds)} seed(s) ({seeds[0]}–{seeds[-1]}), mean ± std. Every method flags the top "
        f"{n_flagged} scores. Detection accuracy: share of all training samples where flagged = "
        "truly flipped; precision and recall are over the flipped samples. Post-trim: test accuracy after removing "
        "the flagged samples and retraining from the same initialisation. Seconds: time to compute the score from "
        "the trained model on this machine, including the gradients or Hessian it needs (not the training). "
        "Label-quality rows are fed the "
        + ("model's predicted labels, as in the paper's released code. " if predicted else "given noisy labels. ")
        + "Influence rows use all parameters' gradients and the training set as the reference set; outlier-gradient "
        "rows use the last layer's gradient. Confidence-weighted entropy follows cleanlab exactly, clipping "
        "included: a sample predicted with probability exactly 1 gets its worst score, which is why it can differ "
        "from the other two (for two classes those rank alike). " + published
    )
