"""Weights check of an assembled MPNet-base folder (tools/fetch_mpnet.sh): the classifier paperlib loads from it
must carry the file's encoder weights, e.g. mpnet.encoder.layer.3.attention.attn.q.weight == the safetensors'
encoder.layer.3.attention.attn.q.weight (a silent re-initialisation would fail here), and the model must have
12 layers of hidden size 768.  Usage: python tools/check_mpnet_weights.py FOLDER"""

import sys

import torch
from safetensors.torch import load_file


def main(folder: str) -> int:
    from paperlib.models import get_layers, load_model

    raw = load_file(f"{folder}/model.safetensors")
    model, tok = load_model(folder, num_labels=4)
    state = model.state_dict()
    names = [
        "encoder.layer.3.attention.attn.q.weight",
        "encoder.layer.11.output.dense.weight",
        "embeddings.word_embeddings.weight",
    ]
    bad = []
    for n in names:
        file_key = n if n in raw else f"mpnet.{n}"
        if not torch.equal(state[f"mpnet.{n}"].float(), raw[file_key].float()):
            bad.append(n)
    layers, hidden = len(get_layers(model)), model.config.hidden_size
    print(
        f"{folder}: {type(model).__name__}, {layers} layers, hidden {hidden}, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, "
        f"attention {model.config._attn_implementation}, tokenizer {type(tok).__name__}"
    )
    if bad or layers != 12 or hidden != 768:
        print(f"error: weights check failed (differs: {bad}; layers {layers}, hidden {hidden})", file=sys.stderr)
        return 2
    print(f"weights check ok: {', '.join('mpnet.' + n for n in names)} equal the file's tensors")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("error: usage: python tools/check_mpnet_weights.py FOLDER", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
