"""Models: the zoo, seeded training and evaluation, safe weight loading."""
from ogdash.models.devices import default_device
from ogdash.models.losses import per_sample_loss, probabilities
from ogdash.models.train import accuracy, confusion, fit, per_class_accuracy, predict_proba
from ogdash.models.weights import load_weights, save_weights
from ogdash.models.zoo import MODEL_KINDS, Classifier, ModelSpec, build_model, weights_key

__all__ = ["per_sample_loss", "probabilities", "accuracy", "confusion", "default_device", "fit", "load_weights",
           "per_class_accuracy", "predict_proba", "save_weights", "MODEL_KINDS", "Classifier", "ModelSpec",
           "build_model", "weights_key"]
