using Kiln.Cli.Commands;

namespace Kiln.Cli.Tests;

/// <summary>
/// The models LlamaCppReferenceTests hand to llama.cpp, each trained by the kiln command on first use and shared by
/// the tests (nothing is trained when every test is skipped). Trained on a short rhyme until its greedy continuation
/// is the rhyme itself, so that each step's choice is far from a tie and a mismatch means a real difference.
/// </summary>
public sealed class LlamaCppTestModels : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-llamacpp-").FullName;
    private readonly Lazy<string> _text, _llama, _gpt2, _adapter;

    public LlamaCppTestModels()
    {
        _text = new(WriteText);
        _llama = new(TrainLlama);
        _gpt2 = new(TrainGpt2);
        _adapter = new(Finetune);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public string P(string name) => Path.Combine(_dir, name);

    /// <summary>The rhyme the models learn, as a text file.</summary>
    public string Text => _text.Value;

    /// <summary>
    /// A Llama checkpoint (character tokenizer, 2 layers of width 256, GQA 8/4 heads, FFN 512): every matrix row is a
    /// multiple of 256, so each K-quant type applies to it without fallbacks.
    /// </summary>
    public string LlamaCheckpoint => _llama.Value;

    /// <summary>A GPT-2 checkpoint (byte-level BPE tokenizer of 300 tokens, 2 layers of width 64).</summary>
    public string Gpt2Checkpoint => _gpt2.Value;

    /// <summary>A LoRA adapter finetuned on the built-in model: it turns Shakespeare into the rhyme.</summary>
    public string Adapter => _adapter.Value;

    public static string BuiltIn => BuiltInModel.Path;

    private string WriteText()
    {
        string[] lines =
        [
            "twinkle twinkle little star", "how I wonder what you are", "up above the world so high", "like a diamond in the sky",
            "when the blazing sun is gone", "when he nothing shines upon", "then you show your little light", "twinkle twinkle all the night",
        ];
        File.WriteAllText(P("rhyme.txt"), string.Concat(Enumerable.Repeat(string.Join('\n', lines) + "\n", 40)));
        return P("rhyme.txt");
    }

    private static void Kiln(params string[] args)
    {
        var r = KilnRunner.Run(args);
        Assert.True(r.ExitCode == 0, $"kiln {string.Join(' ', args)}: {r.Stderr}");
    }

    private string TrainLlama()
    {
        Directory.CreateDirectory(P("char"));
        Kiln("data", "prepare", "--tokenizer", "char", Text, "-o", P("char/train.bin"), P("char/val.bin"));
        Kiln("train", "--layers", "2", "--dim", "256", "--heads", "8", "--kv-heads", "4", "--ffn", "512", "--data", P("char/train.bin"),
            "--steps", "150", "--batch", "4", "--seq", "64", "--lr", "3e-3", "--warmup", "15", "--threads", "2", "--out", P("llama"));
        return P("llama/checkpoint.bin");
    }

    private string TrainGpt2()
    {
        Directory.CreateDirectory(P("bpe"));
        Kiln("tokenizer", "train", "--vocab", "300", Text, "-o", P("bpe/tokenizer.json"));
        Kiln("data", "prepare", "--tokenizer", P("bpe/tokenizer.json"), Text, "-o", P("bpe/train.bin"), P("bpe/val.bin"));
        Kiln("train", "--family", "gpt2", "--layers", "2", "--dim", "64", "--heads", "4", "--data", P("bpe/train.bin"),
            "--steps", "300", "--batch", "8", "--seq", "64", "--lr", "3e-3", "--warmup", "20", "--threads", "2", "--out", P("gpt2"));
        return P("gpt2/checkpoint.bin");
    }

    private string Finetune()
    {
        Kiln("finetune", "-m", BuiltIn, "--data", Text, "--lora-rank", "4", "--steps", "30", "--batch", "2", "--seq", "32", "--lr", "1e-2",
            "--threads", "2", "-o", P("adapter.gguf"));
        return P("adapter.gguf");
    }
}
