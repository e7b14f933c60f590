using Kiln.Inference.Chat;
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
    public static ServedModel Create(ServeSettings settings)
    {
        if (!File.Exists(settings.ModelPath))
            throw new FileNotFoundException($"model file not found: {settings.ModelPath}", settings.ModelPath);
        var model = LlamaModel.Load(settings.ModelPath);
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
