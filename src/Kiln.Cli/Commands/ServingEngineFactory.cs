using Kiln.Inference.Chat;
using Kiln.Models.Llama;
using Kiln.Server;
using Kiln.Serving;
using Kiln.Tokenizers;

namespace Kiln.Cli.Commands;

/// <summary>
/// The one place <c>kiln serve</c> builds its engine. It loads the model, its tokenizer and chat template, and
/// wraps them in an <see cref="IInferenceEngine"/>: today the one-request-at-a-time
/// <see cref="SequentialLlamaEngine"/>; the batching engine replaces it here, taking
/// <see cref="ServeSettings.MaxSequences"/>, <see cref="ServeSettings.MaxBatchTokens"/> and
/// <see cref="ServeSettings.KvCacheMb"/>, which the sequential engine has no use for.
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
            string name = settings.Alias ?? Path.GetFileNameWithoutExtension(settings.ModelPath);
            var context = new LlamaContext(model, new LlamaContextOptions
            {
                ContextLength = settings.ContextLength,
                MaxBatch = settings.MaxBatchTokens,
                Threads = settings.Threads,
            });
            var engine = new SequentialLlamaEngine(context, tokenizer, name, settings.MaxWaiting);
            return new ServedModel(engine, template) { Resources = new OwnedModel(model, context) };
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    private sealed class OwnedModel(LlamaModel model, LlamaContext context) : IDisposable
    {
        public void Dispose()
        {
            context.Dispose();
            model.Dispose();
        }
    }
}
