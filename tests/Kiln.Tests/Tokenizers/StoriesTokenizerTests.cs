using System.Text.Json;
using Kiln.Formats.Gguf;
using Kiln.Tokenizers;

namespace Kiln.Tests.Tokenizers;

/// <summary>stories260K's 512-token SentencePiece vocabulary against llama.cpp's recorded tokenizations and outputs.</summary>
public class StoriesTokenizerTests
{
    private sealed record Prompt(string Text, int[] PromptIds, int[] GeneratedIds, string GeneratedText);

    private static IEnumerable<Prompt> Prompts()
    {
        using var json = JsonDocument.Parse(File.ReadAllText(SharedData.Path("refs", "stories260K_refs.json")));
        foreach (JsonElement p in json.RootElement.GetProperty("prompts").EnumerateArray())
        {
            yield return new Prompt(
                p.GetProperty("prompt").GetString()!,
                p.GetProperty("prompt_ids_with_bos").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                p.GetProperty("generated_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                p.GetProperty("generated_text").GetString()!);
        }
    }

    private static Tokenizer Load()
    {
        using var file = GgufFile.Open(SharedData.Path("models", "stories260K.gguf"));
        return Tokenizer.FromGguf(file);
    }

    [SharedFact]
    public void PromptIdsMatchLlamaCpp()
    {
        Tokenizer tokenizer = Load();
        Assert.Equal(512, tokenizer.VocabSize);
        Assert.Equal(1, tokenizer.BosId);
        Assert.Equal(2, tokenizer.EosId);
        Assert.Equal(-1, tokenizer.PadId); // stored as 0xFFFFFFFF, which llama.cpp ignores
        Assert.True(tokenizer.AddBos);
        int count = 0;
        foreach (Prompt p in Prompts())
        {
            Assert.Equal(p.PromptIds, tokenizer.Encode(p.Text));
            count++;
        }
        Assert.Equal(5, count);
    }

    [SharedFact]
    public void GeneratedIdsStreamToLlamaCppsText()
    {
        Tokenizer tokenizer = Load();
        var stream = new Utf8StreamDecoder(tokenizer);
        foreach (Prompt p in Prompts())
        {
            stream.Reset();
            var text = new System.Text.StringBuilder();
            foreach (int id in p.GeneratedIds)
                text.Append(stream.Append(id));
            text.Append(stream.Flush());
            Assert.Equal(p.GeneratedText, text.ToString());
        }
    }
}
