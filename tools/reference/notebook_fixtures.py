"""Writes the notebook parity fixtures under tests/fixtures/notebook/.

Runs the computation of the seed notebook (word tokenizer, group_texts, the gated
fully connected network, KL-to-duplicate importance, soft-masked Adam) in PyTorch
with dropout off, so that every number is deterministic, and saves what the Rust
tests compare against:

  <config>/model.safetensors             initial weights (PyTorch names and layouts)
  <config>/duplicate.safetensors         the duplicate model of the importance proxy
  <config>/trained_gradient.safetensors  after one epoch of Adam with the gradient soft-mask
  <config>/trained_update.safetensors    after one epoch of Adam with the update soft-mask
  <config>/fixture.json                  config, vocabulary, chunks, labels, batch order,
                                         raw and normalised importance, per-step losses

Two deliberate departures from the notebook, both recorded in fixture.json:
  * dropout is off (model.eval()), so results do not depend on the RNG;
  * parameter gradients left over from the importance pass are zeroed before
    training (the notebook adds them into its first training step).

Usage: python tools/reference/notebook_fixtures.py   (from the repository root)
"""

import json
import os
import random

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS_FILE = os.path.join(ROOT, "examples", "data", "notebook_reviews.txt")
OUT = os.path.join(ROOT, "tests", "fixtures", "notebook")

CONFIGS = {
    # The notebook itself.
    "notebook": dict(vocab_size=300, embed_dim=50, hidden=[30, 10], max_seq_length=50,
                     batch_size=2, seed=0, lr=0.003),
    # Other sizes, three hidden layers, a partial last batch.
    "deep": dict(vocab_size=280, embed_dim=24, hidden=[16, 12, 8], max_seq_length=20,
                 batch_size=3, seed=7, lr=0.01),
}


def tokenizer(corpus):
    """The notebook's tokenizer, returning the vocabulary too."""
    vocab = {}
    for text in corpus:
        for word in text.split():
            if word not in vocab:
                vocab[word] = len(vocab)
    return [[vocab[w] for w in text.split()] for text in corpus], list(vocab)


def group_texts(ids, max_seq_length):
    concatenated = sum(ids, [])
    total = (len(concatenated) // max_seq_length) * max_seq_length
    chunks = [concatenated[i:i + max_seq_length] for i in range(0, total, max_seq_length)]
    labels = [random.sample([0, 1], 1)[0] for _ in chunks]
    return chunks, labels


class SoftMaskNet(nn.Module):
    """The notebook's NNSoftmask with any number of hidden layers."""

    def __init__(self, vocab_size, embed_dim, hidden):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, embed_dim)
        dims = [embed_dim] + hidden
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
        self.head = nn.Linear(hidden[-1], 1)
        self.dropout = nn.Dropout(0.2)

    def forward(self, x, masks=None, return_representation=False):
        x = self.word_embeddings(x)
        for i, fc in enumerate(self.fcs):
            y = fc(x)
            if masks is not None:
                y = y * masks[i]
            x = self.dropout(F.relu(y))
        if return_representation:
            return x
        return torch.sigmoid(self.head(x).mean(1))

    def named_tensors(self):
        out = {"word_embeddings.weight": self.word_embeddings.weight}
        for i, fc in enumerate(self.fcs):
            out[f"fc{i + 1}.weight"] = fc.weight
            out[f"fc{i + 1}.bias"] = fc.bias
        out["head.weight"] = self.head.weight
        out["head.bias"] = self.head.bias
        return {k: v.detach().clone().contiguous() for k, v in out.items()}


def kd_loss(y_s, y_t):
    """DistillKL(T=1) of the notebook, without the deprecated size_average."""
    p_s = F.log_softmax(y_s, dim=1)
    p_t = F.softmax(y_t, dim=1)
    return F.kl_div(p_s, p_t, reduction="sum") / y_s.shape[0]


def impt_norm(impt, one_sided=False):
    impt = impt.clone()
    for layer in range(impt.size(0)):
        impt[layer] = (impt[layer] - impt[layer].mean()) / impt[layer].std()
    if one_sided:
        return torch.tanh(impt.clamp(min=0))
    return torch.tanh(impt).abs()


def importance(model, duplicate, batches, hidden, cumulative, absolute):
    """Gate-gradient importance; `cumulative` reproduces the never-zeroed .grad."""
    masks = [torch.ones(1, h, requires_grad=True) for h in hidden]
    totals = [torch.zeros(1, h) for h in hidden]
    running = [torch.zeros(1, h) for h in hidden]
    tokens = 0
    for input_ids in batches:
        for m in masks:
            m.grad = None
        out = model(input_ids, masks, return_representation=True)
        dup = duplicate(input_ids, masks, return_representation=True)
        kd_loss(dup, out).backward()
        for i, m in enumerate(masks):
            g = m.grad.detach().clone()
            if absolute:
                g = g.abs()
            if cumulative:
                running[i] += g
                totals[i] += running[i]
            else:
                totals[i] += g
        tokens += input_ids.numel()
    model.zero_grad()
    duplicate.zero_grad()
    return [t / tokens for t in totals]


def train_epoch(model, batches, labels, impt, lr, mode):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, eps=1e-8)
    criterion = nn.BCELoss()
    masks = [1 - i[0] for i in impt]
    losses = []
    for input_ids, y in zip(batches, labels):
        optimizer.zero_grad()
        loss = criterion(model(input_ids), y)
        loss.backward()
        if mode == "gradient":
            for fc, m in zip(model.fcs, masks):
                fc.weight.grad *= m.unsqueeze(1)
                fc.bias.grad *= m
        old = [(fc.weight.detach().clone(), fc.bias.detach().clone()) for fc in model.fcs]
        optimizer.step()
        if mode == "update":
            with torch.no_grad():
                for fc, m, (w0, b0) in zip(model.fcs, masks, old):
                    fc.weight.copy_(w0 + m.unsqueeze(1) * (fc.weight - w0))
                    fc.bias.copy_(b0 + m * (fc.bias - b0))
        losses.append(loss.item())
    return losses


def flat(ts):
    return [t.reshape(-1).tolist() for t in ts]


def build(name, cfg, corpus):
    random.seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    ids, words = tokenizer(corpus)
    chunks, labels = group_texts(ids, cfg["max_seq_length"])

    model = SoftMaskNet(cfg["vocab_size"], cfg["embed_dim"], cfg["hidden"]).eval()
    duplicate = SoftMaskNet(cfg["vocab_size"], cfg["embed_dim"], cfg["hidden"]).eval()
    initial = model.named_tensors()

    g = torch.Generator().manual_seed(cfg["seed"])
    bs = cfg["batch_size"]

    def order():
        perm = torch.randperm(len(chunks), generator=g).tolist()
        return [perm[i:i + bs] for i in range(0, len(perm), bs)]

    impt_order = order()
    train_order = order()
    impt_batches = [torch.tensor([chunks[i] for i in b]) for b in impt_order]
    train_batches = [torch.tensor([chunks[i] for i in b]) for b in train_order]
    train_labels = [torch.tensor([[float(labels[i])] for i in b]) for b in train_order]

    raw, normalised = {}, {}
    for acc in ("cumulative", "per_batch"):
        for sign in ("signed", "absolute"):
            key = f"{acc}/{sign}"
            r = importance(model, duplicate, impt_batches, cfg["hidden"],
                           acc == "cumulative", sign == "absolute")
            raw[key] = flat(r)
            normalised[key] = flat(impt_norm(t) for t in r)
    one_sided = flat(impt_norm(t, one_sided=True)
                     for t in importance(model, duplicate, impt_batches, cfg["hidden"], True, False))
    impt = [impt_norm(t) for t in importance(model, duplicate, impt_batches, cfg["hidden"], True, False)]

    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    save_file(initial, os.path.join(d, "model.safetensors"))
    save_file(duplicate.named_tensors(), os.path.join(d, "duplicate.safetensors"))
    losses = {}
    for mode in ("gradient", "update"):
        m = SoftMaskNet(cfg["vocab_size"], cfg["embed_dim"], cfg["hidden"]).eval()
        m.load_state_dict({**{"word_embeddings.weight": initial["word_embeddings.weight"],
                              "head.weight": initial["head.weight"],
                              "head.bias": initial["head.bias"]},
                           **{f"fcs.{i}.{p}": initial[f"fc{i + 1}.{p}"]
                              for i in range(len(cfg["hidden"])) for p in ("weight", "bias")}})
        losses[mode] = train_epoch(m, train_batches, train_labels, impt, cfg["lr"], mode)
        save_file(m.named_tensors(), os.path.join(d, f"trained_{mode}.safetensors"))

    fixture = {
        "generator": "tools/reference/notebook_fixtures.py",
        "torch_version": torch.__version__,
        "departures": ["dropout off (eval mode)",
                       "importance-pass parameter gradients zeroed before training"],
        "config": cfg,
        "vocabulary": words,
        "corpus_ids": ids,
        "chunks": chunks,
        "labels": labels,
        "importance_batches": impt_order,
        "train_batches": train_order,
        "raw_importance": raw,
        "importance": normalised,
        "importance_one_sided": one_sided,
        "train_losses": losses,
        "adam": {"lr": cfg["lr"], "betas": [0.9, 0.999], "eps": 1e-8},
    }
    with open(os.path.join(d, "fixture.json"), "w", encoding="utf-8") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print(f"{name}: {len(chunks)} chunks, {len(impt_batches)} batches, "
          f"usage {[round(float(i.mean()), 4) for i in impt]}")


def tokenizer_cases():
    """Python str.split() on awkward whitespace, for the tokenizer's split rule."""
    texts = ["a\u00a0b\u2003c\x1cd\x1de\x1ef\x1fg\u0085h\u3000i",
             "  leading and trailing\t\n", "tab\tsep\r\nlines\x0bv\x0cf", "zero\u200bwidth"]
    return {"texts": texts, "splits": [t.split() for t in texts]}


def main():
    with open(CORPUS_FILE, encoding="utf-8") as f:
        corpus = [line for line in f.read().split("\n") if line.strip()]
    for name, cfg in CONFIGS.items():
        build(name, cfg, corpus)
    with open(os.path.join(OUT, "split_cases.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_cases(), f, indent=1, ensure_ascii=True)
        f.write("\n")


if __name__ == "__main__":
    main()
