using Kiln.Tokenizers.PreTokenization;

namespace Kiln.Tokenizers;

/// <summary>
/// What a <c>tokenizer.ggml.pre</c> value means to llama.cpp: the pre-tokenizer regexes and the flags set with them
/// (whether whole words found in the vocabulary skip merging, whether BOS is added, whether detokenizing tidies
/// spaces).
/// </summary>
internal sealed record BytePairPreset(
    string Name, string[] Patterns, bool CleanSpaces = true, bool IgnoreMerges = false, bool AddBos = false, bool ClearsBos = false)
{
    public static BytePairPreset For(string? pre)
    {
        // llama.cpp warns and falls back to "default" when a file names no pre-tokenizer.
        string name = string.IsNullOrEmpty(pre) ? "default" : pre;
        return name switch
        {
            "default" => new(name, PreTokenizerPatterns.Default),
            "llama3" or "llama-v3" or "llama-bpe" or "falcon3" =>
                new(name, [PreTokenizerPatterns.LlamaThree], IgnoreMerges: true, AddBos: true),
            "deepseek-llm" => new(name, PreTokenizerPatterns.DeepSeekLlm, CleanSpaces: false),
            "deepseek-coder" => new(name, PreTokenizerPatterns.DeepSeekCoder, CleanSpaces: false),
            "deepseek-v3" => new(name, PreTokenizerPatterns.DeepSeekThree, CleanSpaces: false),
            "falcon" => new(name, PreTokenizerPatterns.Falcon),
            "mpt" or "olmo" or "jais" => new(name, [PreTokenizerPatterns.GptTwo]),
            "starcoder" or "refact" or "codeshell" or "exaone" or "minerva-7b" => new(name, PreTokenizerPatterns.StarCoder),
            "command-r" or "smollm" => new(name, PreTokenizerPatterns.StarCoder, CleanSpaces: false),
            "gpt-2" or "phi-2" or "jina-es" or "jina-de" or "gigachat" or "jina-v1-en" or "jina-v2-es" or "jina-v2-de"
                or "jina-v2-code" or "roberta-bpe" => new(name, [PreTokenizerPatterns.GptTwo]),
            "qwen2" or "deepseek-r1-qwen" => new(name, [PreTokenizerPatterns.QwenTwo], CleanSpaces: false),
            "megrez" or "stablelm2" => new(name, [PreTokenizerPatterns.QwenTwo]),
            "dbrx" or "smaug-bpe" => new(name, [PreTokenizerPatterns.LlamaThree]),
            "chatglm-bpe" => new(name, [PreTokenizerPatterns.LlamaThree], ClearsBos: true),
            "poro-chat" => new(name, [PreTokenizerPatterns.Poro], CleanSpaces: false),
            "bloom" or "gpt3-finnish" => new(name, [PreTokenizerPatterns.Poro]),
            "viking" => new(name, [PreTokenizerPatterns.Poro, @"\p{N}"], CleanSpaces: false),
            "tekken" => new(name, [PreTokenizerPatterns.Tekken], CleanSpaces: false, IgnoreMerges: true, AddBos: true),
            "chameleon" => new(name, PreTokenizerPatterns.Chameleon, CleanSpaces: false, AddBos: true),
            "gpt-4o" => new(name, [PreTokenizerPatterns.GptFourO], CleanSpaces: false),
            _ => throw new NotSupportedException($"unknown pre-tokenizer type '{name}' (tokenizer.ggml.pre)"),
        };
    }
}
