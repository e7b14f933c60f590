using Kiln.Formats.Gguf;
using Kiln.Inference.Chat;
using Kiln.Models.Gpt2;
using Kiln.Models.Llama;
using Kiln.Server;
using Kiln.Serving;
using Kiln.Tokenizers;

namespace Kiln.Cli.Commands;

/// <summary>
/// The one place <c>kiln serve</c> builds its engine: the model, its tokenizer and chat template, and the
/// continuous-batching <see cref="LlamaEngine"/> over a paged KV cache sized by the serve flags.
/// </summary>
internal static class ServingEngineFactory
{
    /// <summary>Fails fast, before the server listens, when the model is one the engine cannot serve.</summary>
    public static void EnsureServable(string modelPath)
    {
        using var file = GgufFile.Open(modelPath);
        RefuseGpt2(file);
    }

    // The engine batches Llama-family sequences over a paged cache; GPT-2 runs in run, chat and perplexity only.
    private static void RefuseGpt2(GgufFile file)
    {
        if (file.TryGetString("general.architecture") == Gpt2Config.Architecture)
            throw new CliException($"kiln serve runs Llama-family models; {file.Path} is a gpt2 model (use kiln run or kiln chat)");
    }

    public static ServedModel Create(ServeSettings settings)
    {
        if (!File.Exists(settings.ModelPath))
            throw new FileNotFoundException($"model file not found: {settings.ModelPath}", settings.ModelPath);
        var file = GgufFile.Open(settings.ModelPath, settings.LoadMode);
        LlamaModel model;
        try
        {
            RefuseGpt2(file);
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
            var template = ChatTemplate.Detect(model.File.TryGetString("tokenizer.chat_template"));
            var engine = new LlamaEngine(model, tokenizer, new LlamaEngineOptions
            {
                ModelName = settings.Alias ?? Path.GetFileNameWithoutExtension(settings.ModelPath),
                MaxSequences = settings.MaxSequences,
                MaxBatchTokens = settings.MaxBatchTokens,
                MaxPrefillTokens = settings.MaxPrefillTokens,
                ContextLength = settings.ContextLength,
                KvCacheMegabytes = settings.KvCacheMb,
                Threads = settings.Threads,
                MaxWaiting = settings.MaxWaiting,
            });
            return new ServedModel(engine, template) { Resources = model };
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}
