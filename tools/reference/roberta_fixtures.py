#!/usr/bin/env python3
"""Writes tests/fixtures/roberta/tiny/: a tiny random RobertaForMaskedLM of
transformers (the DAS paper's model family) as a Hugging Face folder, with a
byte-level BPE tokenizer.json trained here, and in fixture.json:

* the ids transformers' tokenizer gives a few texts (special tokens added);
* two padded MLM batches (pad id 1, so the position ids of padded rows start
  past padding_idx as RoBERTa's do), the first batch's logits and MLM loss;
* the raw gate-gradient importance of the MLM loss over both batches (gates
  `heads` on the input of the attention output dense layer, `intermediate`
  and `output` on the outputs of the two feed-forward dense layers; summed
  gradients over the batches' real tokens), as tools/reference/bert_fixtures.py;
* and in after_step.safetensors every weight after one AdamW step (lr 1e-3,
  eps 1e-6, weight decay 0.01; eps as in llama_fixtures.py) on the first
  batch's loss with the update soft-mask theta_old + (1 - I) * (theta_new -
  theta_old) for a fixed importance pattern, in the semantic head layout of
  tools/reference/das_fixtures.py.

    .venv/bin/python tools/reference/roberta_fixtures.py
    .venv/bin/python tools/reference/roberta_fixtures.py --check SAVED_DIR
"""

import json
import os
import sys

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaForMaskedLM

from bert_fixtures import Gated
from das_fixtures import update_mask

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "roberta", "tiny")
SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
CORPUS = [
    "Soft-masking keeps what a language model already knew.",
    "The capital of France is Paris; the capital of Italy is Rome.",
    "def add(a, b):\n    return a + b  # 42 apples, 3.14 pies",
    "Continual pre-training on new domains, without forgetting the old ones.",
    "Gradients of the gates measure how important each unit is.",
]
TEXTS = [
    "Soft-masking keeps the capital of France.",
    "Unseen: naïve café, 12345 and   spaces\ttabs.",
    "for i in range(10):\n    print(i)",
]
LR, EPS, WD = 1e-3, 1e-6, 0.01


def pattern(rows, units, offset):
    """Importance values in [0, 1): a fixed, uneven pattern."""
    return [[((r * 7 + u * 5 + offset) % 11) / 11.0 for u in range(units)] for r in range(rows)]


def tokenizer():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return tok


def main():
    os.makedirs(OUT, exist_ok=True)
    tok = tokenizer()
    tok.save(os.path.join(OUT, "tokenizer.json"))
    fast = PreTrainedTokenizerFast(tokenizer_file=os.path.join(OUT, "tokenizer.json"),
                                   bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", mask_token="<mask>")
    token_ids = [fast(t)["input_ids"] for t in TEXTS]

    torch.manual_seed(0)
    cfg = RobertaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=130,
                        type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                        layer_norm_eps=1e-5, hidden_act="gelu")
    model = RobertaForMaskedLM(cfg)
    with torch.no_grad():  # spread the near-zero init so the test sees real values
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.eval()
    model.save_pretrained(OUT, safe_serialization=True)

    g = torch.Generator().manual_seed(1)
    batches = []
    for texts in (TEXTS[:2], CORPUS[:3]):
        enc = fast(texts, padding=True, return_tensors="pt")
        ids, mask = enc["input_ids"], enc["attention_mask"]
        special = (ids == 0) | (ids == 2) | (mask == 0)
        sel = (torch.rand(ids.shape, generator=g) < 0.3) & ~special
        sel[:, 1] = True
        labels = torch.full_like(ids, -100)
        labels[sel] = ids[sel]
        masked = ids.clone()
        masked[sel] = 4
        batches.append(dict(input_ids=masked, attention_mask=mask, labels=labels))

    def mlm(b):
        return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                     labels=b["labels"])

    with torch.no_grad():
        out = mlm(batches[0])
    logits, loss = out.logits, out.loss

    gated = Gated(model.roberta, cfg)
    tokens = 0
    for b in batches:
        mlm(b).loss.backward()
        tokens += int(b["attention_mask"].sum())
    importance = {name: (t / tokens).reshape(-1).tolist()
                  for name, t in zip(("heads", "intermediate", "output"), gated.grads())}
    gated.remove()
    model.zero_grad()

    L, H, hd = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.hidden_size // 4
    imp = {"heads": torch.tensor(pattern(L, H, 1)),
           "intermediate": torch.tensor(pattern(L, cfg.intermediate_size, 2)),
           "output": torch.tensor(pattern(L, cfg.hidden_size, 3))}
    params = dict(model.named_parameters())
    old = {k: v.detach().clone() for k, v in params.items()}
    opt = torch.optim.AdamW(model.parameters(), lr=LR, eps=EPS, weight_decay=WD)
    step_loss = mlm(batches[0]).loss
    step_loss.backward()
    opt.step()
    update_mask(params, old, imp, L, hd, encoder="roberta")
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()
          if k not in ("lm_head.decoder.weight", "lm_head.decoder.bias")}
    save_file(sd, os.path.join(OUT, "after_step.safetensors"))

    fixture = {
        "generator": "tools/reference/roberta_fixtures.py",
        "torch_version": torch.__version__,
        "texts": TEXTS,
        "token_ids": token_ids,
        "batches": [{k: v.tolist() for k, v in b.items()} for b in batches],
        "logits": logits.reshape(-1).tolist(),
        "logits_shape": list(logits.shape),
        "mlm_loss": float(loss),
        "importance": importance,
        "step": {"lr": LR, "eps": EPS, "weight_decay": WD, "loss": step_loss.item(),
                 "importance": {k: v.reshape(-1).tolist() for k, v in imp.items()}},
    }
    with open(os.path.join(OUT, "fixture.json"), "w", encoding="utf-8") as f:
        json.dump(fixture, f)
        f.write("\n")
    print(f"wrote {OUT}: vocab {cfg.vocab_size}, loss {float(loss):.5f}")


def check(folder):
    """Loads a folder softmask saved in transformers and compares its logits
    on the first batch with the fixture's."""
    model = RobertaForMaskedLM.from_pretrained(folder, dtype=torch.float32).eval()
    with open(os.path.join(OUT, "fixture.json")) as f:
        want = json.load(f)
    b = want["batches"][0]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(b["input_ids"]),
                       attention_mask=torch.tensor(b["attention_mask"])).logits
    d = (logits.reshape(-1) - torch.tensor(want["logits"])).abs().max().item()
    print(f"{folder}: {type(model).__name__}, logits differ from the fixture's by {d:.2e}")
    assert d < 1e-5


if __name__ == "__main__":
    if sys.argv[1:2] == ["--check"]:
        check(sys.argv[2])
    else:
        main()
