namespace Kiln.Inference.Generation;

/// <summary>Receives generated text as it becomes final (whole UTF-8 characters, stop strings withheld).</summary>
public interface ITextSink
{
    /// <summary>Called once per sampled token; <paramref name="text"/> may be empty and is only valid during the call.</summary>
    void OnToken(int token, ReadOnlySpan<char> text);

    /// <summary>Text released at the end (held-back bytes or a partial stop-string prefix that never completed).</summary>
    void OnFinalText(ReadOnlySpan<char> text);
}
