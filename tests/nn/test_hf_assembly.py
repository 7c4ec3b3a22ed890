"""GPT-2 and BART assembled from archlab.nn blocks give transformers' logits on copied weights.

This checks that the blocks (pre/post-norm, GELU variants, learned positions with offset 2,
causal + padding masks, cross-attention, the KV cache) are general enough for the baselines; the
real loaders live with the models.
"""

import pytest
import torch
from torch import nn

from archlab.nn import (
    Decoder,
    DecoderLayer,
    Encoder,
    EncoderLayer,
    LearnedPositionalEmbedding,
)

transformers = pytest.importorskip("transformers")

V, D, NH, FF, L = 50, 32, 4, 64, 2


class GPT2(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(V, D)
        self.wpe = LearnedPositionalEmbedding(64, D)
        layers = [
            DecoderLayer(D, NH, FF, cross_attention=False, activation="gelu_tanh", norm_first=True)
            for _ in range(L)
        ]
        self.decoder = Decoder(layers, norm=nn.LayerNorm(D))

    def forward(self, ids, mask=None, positions=None, cache=None):  # (B, T) -> (B, T, K)
        if positions is None:
            positions = torch.arange(ids.shape[1])
        x = self.wte(ids) + self.wpe(positions)
        return self.decoder(x, padding_mask=mask, cache=cache) @ self.wte.weight.T

    @torch.no_grad()
    def load_hf(self, hf):
        sd = hf.transformer.state_dict()
        self.wte.weight.copy_(sd["wte.weight"])
        self.wpe.weight.copy_(sd["wpe.weight"])
        self.decoder.norm.load_state_dict({k[5:]: v for k, v in sd.items() if k[:5] == "ln_f."})
        for i, layer in enumerate(self.decoder.layers):
            p = f"h.{i}."
            attn, ffn = layer.self_attn, layer.ffn
            wq, wk, wv = sd[p + "attn.c_attn.weight"].T.chunk(3)  # Conv1D: x @ W
            bq, bk, bv = sd[p + "attn.c_attn.bias"].chunk(3)
            for proj, w, b in [(attn.q_proj, wq, bq), (attn.k_proj, wk, bk), (attn.v_proj, wv, bv)]:
                proj.weight.copy_(w)
                proj.bias.copy_(b)
            for ours, theirs in [(attn.out_proj, "attn.c_proj"), (ffn.fc1, "mlp.c_fc")]:
                ours.weight.copy_(sd[p + theirs + ".weight"].T)
                ours.bias.copy_(sd[p + theirs + ".bias"])
            ffn.fc2.weight.copy_(sd[p + "mlp.c_proj.weight"].T)
            ffn.fc2.bias.copy_(sd[p + "mlp.c_proj.bias"])
            layer.self_attn_norm.weight.copy_(sd[p + "ln_1.weight"])
            layer.self_attn_norm.bias.copy_(sd[p + "ln_1.bias"])
            layer.ffn_norm.weight.copy_(sd[p + "ln_2.weight"])
            layer.ffn_norm.bias.copy_(sd[p + "ln_2.bias"])


def test_gpt2_from_blocks_matches_transformers():
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=V,
        n_positions=64,
        n_embd=D,
        n_layer=L,
        n_head=NH,
        n_inner=FF,
        bos_token_id=0,
        eos_token_id=0,
    )
    hf = transformers.GPT2LMHeadModel(config).eval()
    ours = GPT2().eval()
    ours.load_hf(hf)
    ids = torch.randint(0, V, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, :3] = 0  # left padding
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask, position_ids=positions).logits
        got = ours(ids, mask, positions)
        torch.testing.assert_close(got[mask.bool()], expected[mask.bool()], atol=1e-4, rtol=0)
        # incremental decoding with the cache gives the same logits
        cache = ours.decoder.new_cache()
        steps = [ours(ids[:, :4], mask[:, :4], positions[:, :4], cache)]
        for t in range(4, 7):
            steps.append(ours(ids[:, t : t + 1], mask[:, : t + 1], positions[:, t : t + 1], cache))
        got = torch.cat(steps, 1)
        torch.testing.assert_close(got[mask.bool()], expected[mask.bool()], atol=1e-4, rtol=0)


class Bart(nn.Module):
    def __init__(self):
        super().__init__()
        self.shared = nn.Embedding(V, D)
        self.enc_pos = LearnedPositionalEmbedding(64, D, offset=2)
        self.dec_pos = LearnedPositionalEmbedding(64, D, offset=2)
        self.enc_ln = nn.LayerNorm(D)  # layernorm_embedding
        self.dec_ln = nn.LayerNorm(D)
        self.encoder = Encoder([EncoderLayer(D, NH, FF) for _ in range(L)])
        self.decoder = Decoder([DecoderLayer(D, NH, FF) for _ in range(L)])
        self.register_buffer("final_logits_bias", torch.zeros(1, V))

    def forward(self, ids, mask, dec_ids):  # (B, S), (B, S), (B, T) -> (B, T, K)
        x = self.enc_ln(self.shared(ids) + self.enc_pos(torch.arange(ids.shape[1])))
        memory = self.encoder(x, padding_mask=mask)
        y = self.dec_ln(self.shared(dec_ids) + self.dec_pos(torch.arange(dec_ids.shape[1])))
        h = self.decoder(y, memory, memory_padding_mask=mask)
        return h @ self.shared.weight.T + self.final_logits_bias

    @torch.no_grad()
    def load_hf(self, hf):
        sd = hf.state_dict()
        rename = {
            "self_attn_layer_norm": "self_attn_norm",
            "encoder_attn_layer_norm": "cross_attn_norm",
            "encoder_attn": "cross_attn",
            "final_layer_norm": "ffn_norm",
            "fc1": "ffn.fc1",
            "fc2": "ffn.fc2",
        }
        ours = {}
        for key, value in sd.items():
            for part in ("encoder", "decoder"):
                prefix = f"model.{part}.layers."
                if key.startswith(prefix):
                    i, rest = key[len(prefix) :].split(".", 1)
                    head, tail = rest.split(".", 1)
                    ours[f"{part}.layers.{i}.{rename.get(head, head)}.{tail}"] = value
        ours["shared.weight"] = sd["model.shared.weight"]
        ours["final_logits_bias"] = sd["final_logits_bias"]
        for part, short in (("encoder", "enc"), ("decoder", "dec")):
            ours[f"{short}_pos.weight"] = sd[f"model.{part}.embed_positions.weight"]
            for p in ("weight", "bias"):
                ours[f"{short}_ln.{p}"] = sd[f"model.{part}.layernorm_embedding.{p}"]
        self.load_state_dict(ours)


def test_bart_from_blocks_matches_transformers():
    torch.manual_seed(0)
    config = transformers.BartConfig(
        vocab_size=V,
        d_model=D,
        encoder_layers=L,
        decoder_layers=L,
        encoder_attention_heads=NH,
        decoder_attention_heads=NH,
        encoder_ffn_dim=FF,
        decoder_ffn_dim=FF,
        max_position_embeddings=64,
    )
    hf = transformers.BartForConditionalGeneration(config).eval()
    with torch.no_grad():
        hf.final_logits_bias.normal_()
        for name, p in hf.named_parameters():  # random norms and biases, so a misplaced one shows
            if "norm" in name or name.endswith("bias"):
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.3)
    ours = Bart().eval()
    ours.load_hf(hf)
    ids = torch.randint(3, V, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 6:] = 0
    dec_ids = torch.randint(3, V, (2, 5))
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec_ids).logits
        torch.testing.assert_close(ours(ids, mask, dec_ids), expected, atol=1e-4, rtol=0)
