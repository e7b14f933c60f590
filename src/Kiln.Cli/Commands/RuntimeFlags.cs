using System.CommandLine;
using Kiln.Formats.Gguf;
using Kiln.Models;
using Kiln.Models.Gpt2;
using Kiln.Models.Llama;
using Kiln.Models.Lora;
using Kiln.Tokenizers;

namespace Kiln.Cli.Commands;

/// <summary>Model and runtime flags shared by the commands that run a model.</summary>
internal sealed class RuntimeFlags
{
    public readonly Option<string> Model = new("--model", "-m")
    {
        Description = "Path of a GGUF model file; default: the built-in model Kiln trained on Tiny Shakespeare",
        DefaultValueFactory = _ => BuiltInModel.Path,
    };
    public readonly Option<int> Threads = new("--threads", "-t") { Description = "Worker threads; default: one per physical core" };
    public readonly Option<int> ContextSize = new("--ctx-size", "-c") { Description = "Context length in tokens; default: the model's, at most 4096" };
    public readonly Option<int> BatchSize = new("--batch-size", "-b") { Description = "Prompt tokens per forward pass", DefaultValueFactory = _ => 512 };
    public readonly Option<string> CacheType = new("--cache-type") { Description = "KV cache element type: f16, f32 or q8_0", DefaultValueFactory = _ => "f16" };
    public readonly Option<bool> FlashAttention = CreateFlashAttention();

    /// <summary>-fa / --flash-attn, shared with the commands that do not load through these flags (bench, perplexity).</summary>
    public static Option<bool> CreateFlashAttention() => new("--flash-attn", "-fa")
    {
        Description = "Tiled online-softmax attention (as llama.cpp's -fa): faster on long prompts, O(tile) memory; agrees with the default to float rounding, not bit for bit",
    };

    public readonly LoadModeFlags LoadMode = new();
    public readonly Option<string[]> Lora = new("--lora") { Description = "LoRA adapter GGUF to apply (repeatable)", AllowMultipleArgumentsPerToken = false };

    public RuntimeFlags()
    {
        CacheType.AcceptOnlyFromAmong("f16", "f32", "q8_0");
    }

    public void AddTo(Command command)
    {
        foreach (Option o in new Option[] { Model, Threads, ContextSize, BatchSize, CacheType, FlashAttention, Lora })
            command.Options.Add(o);
        LoadMode.AddTo(command);
    }

    /// <summary>Loads the model (Llama family or GPT-2, by general.architecture), its tokenizer and a context sized by the flags.</summary>
    public LoadedModel Load(ParseResult r)
    {
        int threads = r.GetValue(Threads);
        int ctx = r.GetValue(ContextSize);
        int batch = r.GetValue(BatchSize);
        if (threads < 0 || threads > 1024)
            throw new CliException($"--threads {threads} is out of range (1 to 1024, or 0 for the default)");
        if (ctx < 0)
            throw new CliException($"--ctx-size {ctx} must not be negative");
        if (batch < 1)
            throw new CliException($"--batch-size {batch} must be at least 1");

        var loadMode = LoadMode.Resolve(r);
        string path = r.GetValue(Model)!;
        if (!File.Exists(path))
            throw new FileNotFoundException($"model file not found: {path}", path);
        var adapters = (r.GetValue(Lora) ?? []).Select(LoraAdapter.Load).ToArray();
        var cacheType = r.GetValue(CacheType) switch
        {
            "f32" => KvCacheType.F32,
            "q8_0" => KvCacheType.Q8_0,
            _ => KvCacheType.F16,
        };
        var file = GgufFile.Open(path, loadMode);
        if (file.TryGetString("general.architecture") == Gpt2Config.Architecture)
            return LoadGpt2(file, adapters.Length, ctx, batch, threads, cacheType, r.GetValue(FlashAttention));
        LlamaModel model;
        try
        {
            model = new LlamaModel(file, ownsFile: true);
        }
        catch
        {
            file.Dispose();
            throw;
        }
        try
        {
            var tokenizer = Tokenizer.FromGguf(model.File);
            var context = new LlamaContext(model, new LlamaContextOptions
            {
                ContextLength = ctx,
                MaxBatch = batch,
                Threads = threads,
                Adapters = adapters,
                KvCacheType = cacheType,
                FlashAttention = r.GetValue(FlashAttention),
            });
            return new LoadedModel(model.File, model.Config.ContextLength, tokenizer, context, model);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    private static LoadedModel LoadGpt2(GgufFile file, int adapters, int ctx, int batch, int threads, KvCacheType cacheType, bool flashAttention)
    {
        Gpt2Model model;
        try
        {
            if (adapters > 0)
                throw new CliException($"LoRA adapters apply to Llama-family models; {file.Path} is a gpt2 model");
            model = new Gpt2Model(file, ownsFile: true);
        }
        catch
        {
            file.Dispose();
            throw;
        }
        try
        {
            if (ctx > model.Config.ContextLength)
                throw new CliException($"--ctx-size {ctx} is longer than this GPT-2 model's {model.Config.ContextLength} learned positions");
            var tokenizer = Tokenizer.FromGguf(model.File);
            var context = new Gpt2Context(model, new Gpt2ContextOptions
            {
                ContextLength = ctx,
                MaxBatch = batch,
                Threads = threads,
                KvCacheType = cacheType,
                FlashAttention = flashAttention,
            });
            return new LoadedModel(model.File, model.Config.ContextLength, tokenizer, context, model);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Opens only the tokenizer of a GGUF file (vocabulary-only files have no weights).</summary>
    public static (GgufFile File, Tokenizer Tokenizer) LoadTokenizer(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"model file not found: {path}", path);
        var file = GgufFile.Open(path);
        try
        {
            return (file, Tokenizer.FromGguf(file));
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }
}

/// <summary>
/// A model of any supported architecture (dispatched on general.architecture), its tokenizer and one context;
/// <paramref name="TrainedContextLength"/> is the model's own limit, the context's may be smaller.
/// </summary>
internal sealed record LoadedModel(GgufFile File, int TrainedContextLength, Tokenizer Tokenizer, IModelContext Context, IDisposable Model) : IDisposable
{
    public void Dispose()
    {
        Context.Dispose();
        Model.Dispose();
    }
}
