"""The embedded default model and tokenizer, and loading real checkpoints from a folder."""
import pytest
import torch
from transformers import BertConfig, LlamaConfig

from radixlib.executor import AttentionExecutor, pool_for
from radixlib.forward import ForwardRequest
from radixlib.models import default_model, default_tokenizer, load_model, seeded_model

TINY_LLAMA = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=128, vocab_size=256, max_position_embeddings=128)


def test_tokenizer_round_trips_corpus_text():
    tokenizer = default_tokenizer()
    text = "You are a helpful assistant.\nWhat is a radix tree? It has 128 pages!"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == "you are a helpful assistant. what is a radix tree? it has 128 pages!"


def test_tokenizer_is_the_same_every_time():
    assert default_tokenizer().get_vocab() == default_tokenizer().get_vocab()


def test_unknown_words_become_unk():
    tokenizer = default_tokenizer()
    assert tokenizer("xylophone")["input_ids"] == [tokenizer.unk_token_id]


def test_seeded_model_is_reproducible_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a, b = seeded_model(TINY_LLAMA, seed=3), seeded_model(TINY_LLAMA, seed=3)
    assert torch.rand(1) == expected_next
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.lm_head.weight, seeded_model(TINY_LLAMA, seed=4).lm_head.weight)
    rounded = seeded_model(TINY_LLAMA, seed=3, dtype=torch.bfloat16)
    assert all(torch.equal(p.to(torch.bfloat16), q) for p, q in zip(a.parameters(), rounded.parameters()))
    widened = seeded_model(TINY_LLAMA, seed=3, dtype=torch.float64)
    assert all(q.dtype == torch.float64 and torch.equal(p.double(), q)
               for p, q in zip(a.parameters(), widened.parameters()))


def test_default_model_speaks_the_tokenizer_and_runs_on_the_executor():
    tokenizer, model = default_tokenizer(), default_model()
    assert model.config.vocab_size == len(tokenizer)
    pool = pool_for(model, num_pages=16, page_size=4)
    executor = AttentionExecutor(model, pool)
    ids = tokenizer("what is a cache?")["input_ids"]
    (token,) = executor.prefill([ForwardRequest(ids, 0, pool.slot_tensor(list(range(2)), len(ids)))])
    assert 0 <= token < len(tokenizer) and isinstance(tokenizer.decode([token]), str)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_load_model_round_trip(tmp_path, dtype):
    saved = seeded_model(TINY_LLAMA, seed=1, dtype=dtype)
    saved.save_pretrained(tmp_path)
    loaded = load_model(tmp_path)
    assert type(loaded).__name__ == "LlamaForCausalLM" and loaded.dtype == dtype and not loaded.training
    ids = torch.tensor([[5, 7, 11, 13]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, saved(ids).logits)


def test_load_model_refuses_an_unsupported_architecture(tmp_path):
    config = BertConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=4, intermediate_size=128)
    config.architectures = ["BertForMaskedLM"]
    config.save_pretrained(tmp_path)            # no weights: the refusal comes before loading any
    with pytest.raises(ValueError, match="BertForMaskedLM; radixlib supports LlamaForCausalLM"):
        load_model(tmp_path)


def test_load_model_refuses_a_folder_without_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(tmp_path / "nowhere")
