"""Cross-modal retrieval on top of a fitted predictor: embeddings of one modality, a FAISS index
over a gallery, queries from any other aligned modality, retrieval metrics beside a linear-CCA
baseline, and zero-shot classification by class-name embeddings.

    from polymodal.retrieval import build_index, retrieve
    index = build_index(pred, "gallery.csv", modality="image"); index.save("runs/x/index")
    retrieve(pred, index, "queries.csv", modality="caption", k=10)
"""

from polymodal.retrieval.embed import embed_rows, load_embeddings, save_embeddings
from polymodal.retrieval.index import EmbeddingIndex
from polymodal.retrieval.search import build_index, cca_baseline, evaluate_retrieval, retrieve
from polymodal.retrieval.zero_shot import class_embeddings, read_classes, zero_shot, zero_shot_accuracy

__all__ = [
    "EmbeddingIndex", "build_index", "cca_baseline", "class_embeddings", "embed_rows", "evaluate_retrieval",
    "load_embeddings", "read_classes", "retrieve", "save_embeddings", "zero_shot", "zero_shot_accuracy",
]
