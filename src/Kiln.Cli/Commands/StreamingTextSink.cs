using Kiln.Inference.Generation;

namespace Kiln.Cli.Commands;

/// <summary>Writes each token's text as soon as it is final, so a user sees the stream live.</summary>
internal sealed class StreamingTextSink(TextWriter writer) : ITextSink
{
    private readonly System.Text.StringBuilder? _capture;

    public StreamingTextSink(TextWriter writer, bool capture) : this(writer)
    {
        if (capture)
            _capture = new System.Text.StringBuilder();
    }

    /// <summary>Everything written, when created with capture (chat keeps the reply for the transcript).</summary>
    public string Captured => _capture?.ToString() ?? "";

    public void OnToken(int token, ReadOnlySpan<char> text) => Write(text);

    public void OnFinalText(ReadOnlySpan<char> text) => Write(text);

    private void Write(ReadOnlySpan<char> text)
    {
        if (text.IsEmpty)
            return;
        writer.Write(text);
        writer.Flush();
        _capture?.Append(text);
    }
}
