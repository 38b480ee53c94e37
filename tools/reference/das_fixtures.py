"""Writes tests/fixtures/bert/das/: one DAS training step on the tiny BERT.

PyTorch + transformers, dropout off (eval mode), on the tiny BertForMaskedLM of
tests/fixtures/bert/tiny and the first batch of its fixture:

* the contrastive term of DAS (METHOD.md §3): z1 and z2 are the mean-pooled
  last hidden states of the original (unmasked) tokens, z3 the same with the
  importance applied as forward gates; cosine similarities over temperature
  0.05, positive z2[i], negatives the other z2 rows and every z3 row;
* the total loss, MLM + contrastive;
* one AdamW step (lr 1e-3, eps 1e-8, weight decay 0.01) with the update
  soft-mask theta_old + (1 - I) * (theta_new - theta_old) in the semantic head
  layout: q, k, v output rows and biases of each head, the attention output
  dense layer's input columns of each head, intermediate and output dense
  rows and biases.

The importance is a fixed pattern in [0, 1), written into fixture.json.
Usage: python tools/reference/das_fixtures.py
"""

import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertForMaskedLM

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "tests", "fixtures", "bert", "tiny")
OUT = os.path.join(ROOT, "tests", "fixtures", "bert", "das")
TEMPERATURE = 0.05
LR, EPS, WD = 1e-3, 1e-8, 0.01


def pattern(rows, units, offset):
    """Importance values in [0, 1): a fixed, uneven pattern."""
    return [[((r * 7 + u * 5 + offset) % 11) / 11.0 for u in range(units)] for r in range(rows)]


def update_mask(params, old, imp, layers, head_dim, encoder="bert"):
    """theta_old + (1 - I) * (theta_new - theta_old) in place, in the semantic
    head layout (see above), for the parameters of `encoder.encoder.layer.N`."""
    with torch.no_grad():
        def pull(name, keep):
            p = params[name]
            p.copy_(old[name] + keep * (p - old[name]))

        for i in range(layers):
            pre = f"{encoder}.encoder.layer.{i}"
            heads = (1 - imp["heads"][i]).repeat_interleave(head_dim)
            for part in ("query", "key", "value"):
                pull(f"{pre}.attention.self.{part}.weight", heads.unsqueeze(1))
                pull(f"{pre}.attention.self.{part}.bias", heads)
            pull(f"{pre}.attention.output.dense.weight", heads.unsqueeze(0))
            for name in ("intermediate", "output"):
                keep = 1 - imp[name][i]
                pull(f"{pre}.{name}.dense.weight", keep.unsqueeze(1))
                pull(f"{pre}.{name}.dense.bias", keep)


def main():
    cfg = BertConfig.from_json_file(os.path.join(TINY, "config.json"))
    model = BertForMaskedLM(cfg).eval()
    state = load_file(os.path.join(TINY, "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    model.tie_weights()
    fixture = json.load(open(os.path.join(TINY, "fixture.json")))
    b = {k: torch.tensor(v) for k, v in fixture["batches"][0].items()}
    L, H = cfg.num_hidden_layers, cfg.num_attention_heads
    head_dim = cfg.hidden_size // H
    imp = {
        "heads": torch.tensor(pattern(L, H, 1)),
        "intermediate": torch.tensor(pattern(L, cfg.intermediate_size, 2)),
        "output": torch.tensor(pattern(L, cfg.hidden_size, 3)),
    }

    gates = {"on": False}

    def head_hook(i):
        def hook(_m, args):
            if not gates["on"]:
                return None
            return (args[0] * imp["heads"][i].repeat_interleave(head_dim),)
        return hook

    def scale_hook(name, i):
        def hook(_m, _a, out):
            return out * imp[name][i] if gates["on"] else out
        return hook

    for i, layer in enumerate(model.bert.encoder.layer):
        layer.attention.output.dense.register_forward_pre_hook(head_hook(i))
        layer.intermediate.dense.register_forward_hook(scale_hook("intermediate", i))
        layer.output.dense.register_forward_hook(scale_hook("output", i))

    labels = b["labels"]
    original = torch.where(labels != -100, labels, b["input_ids"])
    mask = b["attention_mask"]

    def pooled(gated):
        gates["on"] = gated
        h = model.bert(input_ids=original, attention_mask=mask,
                       token_type_ids=torch.zeros_like(original)).last_hidden_state
        gates["on"] = False
        m = mask.unsqueeze(-1).float()
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)

    def unit(z):
        return z / z.norm(dim=1, keepdim=True).clamp(min=1e-8)

    mlm = model(input_ids=b["input_ids"], attention_mask=mask,
                token_type_ids=torch.zeros_like(original), labels=labels).loss
    z1, z2, z3 = pooled(False), pooled(False), pooled(True)
    logits = unit(z1) @ torch.cat([unit(z2), unit(z3)], 0).T / TEMPERATURE
    contrastive = F.cross_entropy(logits, torch.arange(z1.shape[0]))
    loss = mlm + contrastive

    params = dict(model.named_parameters())
    old = {k: v.detach().clone() for k, v in params.items()}
    opt = torch.optim.AdamW(model.parameters(), lr=LR, eps=EPS, weight_decay=WD)
    opt.zero_grad()
    loss.backward()
    opt.step()

    update_mask(params, old, imp, L, head_dim)

    os.makedirs(OUT, exist_ok=True)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()
          if k not in ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")}
    save_file(sd, os.path.join(OUT, "after_step.safetensors"))
    result = {
        "generator": "tools/reference/das_fixtures.py",
        "torch_version": torch.__version__,
        "temperature": TEMPERATURE,
        "lr": LR, "eps": EPS, "weight_decay": WD,
        "importance": {k: v.reshape(-1).tolist() for k, v in imp.items()},
        "mlm_loss": float(mlm),
        "contrastive_loss": float(contrastive),
        "total_loss": float(loss),
    }
    with open(os.path.join(OUT, "fixture.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print("das: mlm", float(mlm), "contrastive", float(contrastive))


if __name__ == "__main__":
    main()
