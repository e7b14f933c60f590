namespace Kiln.Tokenizers;

/// <summary>
/// Everything a tokenizer is built from, as GGUF's <c>tokenizer.ggml.*</c> keys store it. <see cref="Tokenizer.FromGguf"/>
/// fills it from a file; tests and converters (e.g. llama2.c's tokenizer.bin) can fill it directly and call
/// <see cref="Tokenizer.Create"/>. Optional values left null take llama.cpp's defaults for the model type.
/// </summary>
public sealed class TokenizerData
{
    /// <summary><c>tokenizer.ggml.model</c>: "llama" (SentencePiece BPE) or "gpt2" (byte-level BPE).</summary>
    public required string Model { get; init; }

    /// <summary><c>tokenizer.ggml.pre</c>: the byte-level BPE pre-tokenizer ("gpt-2", "llama-bpe", …); null means "default".</summary>
    public string? Pre { get; init; }

    /// <summary><c>tokenizer.ggml.tokens</c>: the piece text of every token id.</summary>
    public required IReadOnlyList<string> Tokens { get; init; }

    /// <summary><c>tokenizer.ggml.scores</c>: SentencePiece merge priorities (higher merges first); null: all 0.</summary>
    public IReadOnlyList<float>? Scores { get; init; }

    /// <summary><c>tokenizer.ggml.token_type</c>: raw <see cref="TokenType"/> values; null: all normal.</summary>
    public IReadOnlyList<int>? TokenTypes { get; init; }

    /// <summary><c>tokenizer.ggml.merges</c>: "left right" pairs, earlier ranks first (byte-level BPE only).</summary>
    public IReadOnlyList<string>? Merges { get; init; }

    // Special token ids as stored (uint32 in GGUF; out-of-range values are ignored as llama.cpp does).
    public long? BosId { get; init; }
    public long? EosId { get; init; }
    public long? EotId { get; init; }
    public long? EomId { get; init; }
    public long? UnknownId { get; init; }
    public long? SeparatorId { get; init; }
    public long? PadId { get; init; }
    public long? MaskId { get; init; }
    public long? FimPrefixId { get; init; }
    public long? FimSuffixId { get; init; }
    public long? FimMiddleId { get; init; }
    public long? FimPadId { get; init; }
    public long? FimRepoId { get; init; }
    public long? FimSeparatorId { get; init; }

    /// <summary><c>tokenizer.ggml.add_bos_token</c>.</summary>
    public bool? AddBos { get; init; }

    /// <summary><c>tokenizer.ggml.add_eos_token</c>.</summary>
    public bool? AddEos { get; init; }

    /// <summary><c>tokenizer.ggml.add_space_prefix</c> (SentencePiece: default true).</summary>
    public bool? AddSpacePrefix { get; init; }

    /// <summary><c>general.name</c>: llama.cpp keys a few per-model token behaviours on it (Phi-3's whitespace stripping).</summary>
    public string? ModelName { get; init; }
}
