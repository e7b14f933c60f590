using Kiln.Formats.Gguf;
using Kiln.Tokenizers;

namespace Kiln.Tests.Tokenizers;

/// <summary>Reading tokenizer keys from GGUF files written to a temp directory.</summary>
public sealed class GgufTokenizerReaderTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("kiln-tokenizer-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private Tokenizer Load(Action<GgufWriter> fill)
    {
        var writer = new GgufWriter();
        fill(writer);
        string path = Path.Combine(_directory, $"{Guid.NewGuid():N}.gguf");
        writer.Write(path);
        using var file = GgufFile.Open(path);
        return Tokenizer.FromGguf(file);
    }

    private static void SentencePiece(GgufWriter w)
    {
        w.SetMetadata("general.name", GgufValue.FromString("tiny"));
        w.SetMetadata("tokenizer.ggml.model", GgufValue.FromString("llama"));
        w.SetMetadata("tokenizer.ggml.tokens", GgufValue.FromArray(GgufArray.Of("<unk>", "<s>", "</s>", "\u2581a", "b")));
        w.SetMetadata("tokenizer.ggml.scores", GgufValue.FromArray(GgufArray.Of(0f, 0f, 0f, -1f, -2f)));
        w.SetMetadata("tokenizer.ggml.token_type", GgufValue.FromArray(GgufArray.Of(2, 3, 3, 1, 1)));
    }

    [Fact]
    public void ReadsASentencePieceVocabulary()
    {
        Tokenizer tokenizer = Load(w =>
        {
            SentencePiece(w);
            w.SetMetadata("tokenizer.ggml.bos_token_id", GgufValue.FromUInt32(2));
            w.SetMetadata("tokenizer.ggml.eos_token_id", GgufValue.FromUInt32(1));
            w.SetMetadata("tokenizer.ggml.padding_token_id", GgufValue.FromUInt32(uint.MaxValue));
            w.SetMetadata("tokenizer.ggml.add_eos_token", GgufValue.FromBool(true));
        });
        Assert.Equal(5, tokenizer.VocabSize);
        Assert.Equal(2, tokenizer.BosId);
        Assert.Equal(1, tokenizer.EosId);
        Assert.Equal(-1, tokenizer.PadId);
        Assert.Equal([2, 3, 4, 1], tokenizer.Encode("ab"));
    }

    [Fact]
    public void IntegerScoresAreAccepted()
    {
        Tokenizer tokenizer = Load(w =>
        {
            SentencePiece(w);
            w.SetMetadata("tokenizer.ggml.scores", GgufValue.FromArray(GgufArray.Of(0, 0, 0, -1, -2)));
        });
        Assert.Equal([3, 4], tokenizer.Encode("ab", addSpecial: false));
    }

    [Fact]
    public void WrongArrayTypesAreRejected()
    {
        var error = Assert.Throws<InvalidDataException>(() => Load(w =>
        {
            SentencePiece(w);
            w.SetMetadata("tokenizer.ggml.token_type", GgufValue.FromArray(GgufArray.Of(2u, 3u, 3u, 1u, 1u)));
        }));
        Assert.Contains("token_type", error.Message);

        error = Assert.Throws<InvalidDataException>(() => Load(w =>
        {
            SentencePiece(w);
            w.SetMetadata("tokenizer.ggml.scores", GgufValue.FromArray(GgufArray.Of(0.0, 0.0, 0.0, -1.0, -2.0)));
        }));
        Assert.Contains("scores", error.Message);
    }

    [Fact]
    public void MissingOrForeignTokenizersAreNotSupported()
    {
        var error = Assert.Throws<NotSupportedException>(() => Load(w => w.SetMetadata("general.name", GgufValue.FromString("x"))));
        Assert.Contains("tokenizer.ggml.model", error.Message);

        error = Assert.Throws<NotSupportedException>(() => Load(w =>
        {
            SentencePiece(w);
            w.SetMetadata("tokenizer.ggml.model", GgufValue.FromString("t5"));
        }));
        Assert.Contains("'t5'", error.Message);
    }

    [Fact]
    public void MissingTokensAreReported()
    {
        var error = Assert.Throws<InvalidDataException>(() => Load(w => w.SetMetadata("tokenizer.ggml.model", GgufValue.FromString("gpt2"))));
        Assert.Contains("tokenizer.ggml.tokens", error.Message);
    }
}
