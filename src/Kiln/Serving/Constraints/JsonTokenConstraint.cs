using Kiln.Tokenizers;

namespace Kiln.Serving.Constraints;

/// <summary>
/// Constrains generation to JSON text of a schema: <see cref="Mask"/> leaves only the tokens whose bytes keep the
/// text a prefix of some valid document (end-of-generation tokens only once the document is whole), and
/// <see cref="Accept"/> advances the recognizer. One instance per sequence; not thread-safe.
/// </summary>
public sealed class JsonTokenConstraint : ITokenConstraint
{
    private readonly Tokenizer _tokenizer;
    private readonly TokenByteTrie _trie;
    private readonly bool[] _allowed;
    private readonly Stack<(int Node, JsonGrammarState State)> _pending = new();
    private JsonGrammarState _state;
    private JsonGrammarState? _maskedState;
    private int _maskedCount;
    private bool _ended;

    public JsonTokenConstraint(Tokenizer tokenizer, JsonSchemaNode schema)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(schema);
        _tokenizer = tokenizer;
        _trie = TokenByteTrie.For(tokenizer);
        _allowed = new bool[_trie.VocabSize];
        _state = JsonGrammarState.Start(schema);
    }

    /// <summary>The recognizer's state after the tokens accepted so far.</summary>
    public JsonGrammarState State => _state;

    public bool IsComplete => _ended || _state.IsComplete;

    /// <summary>Whether an end-of-generation token may come now (the text is a whole document).</summary>
    public bool CanEnd => _state.CanEnd;

    public void Mask(Span<float> logits)
    {
        int allowedCount = ComputeAllowed();
        int n = Math.Min(logits.Length, _allowed.Length);
        // A vocabulary that cannot spell any continuation (no byte tokens) must still be able to stop.
        bool stopAnyway = allowedCount == 0;
        for (int i = 0; i < n; i++)
        {
            if (!_allowed[i] && !(stopAnyway && _tokenizer.IsEndOfGeneration(i)))
                logits[i] = float.NegativeInfinity;
        }
        for (int i = n; i < logits.Length; i++)
            logits[i] = float.NegativeInfinity;
    }

    /// <summary>Whether <paramref name="token"/> may come next.</summary>
    public bool IsAllowed(int token)
    {
        if (_tokenizer.IsEndOfGeneration(token))
            return _state.CanEnd;
        ReadOnlySpan<byte> bytes = _tokenizer.PieceBytes(token, renderSpecial: false);
        if (bytes.IsEmpty)
            return false;
        JsonGrammarState? state = _state;
        foreach (byte b in bytes)
        {
            state = state.Step(b);
            if (state is null)
                return false;
        }
        return true;
    }

    public void Accept(int token)
    {
        if (_tokenizer.IsEndOfGeneration(token))
        {
            _ended = true;
            return;
        }
        ReadOnlySpan<byte> bytes = _tokenizer.PieceBytes(token, renderSpecial: false);
        if (bytes.IsEmpty)
            throw new InvalidOperationException($"token {token} renders no text and cannot extend the JSON document");
        JsonGrammarState state = _state;
        foreach (byte b in bytes)
            state = state.Step(b) ?? throw new InvalidOperationException($"token {token} cannot continue the JSON document");
        _state = state;
    }

    /// <summary>Marks every token allowed now in <see cref="_allowed"/> by walking the token trie from the current state.</summary>
    private int ComputeAllowed()
    {
        // States are immutable and string content steps return the same instance, so while a token only extends
        // a string the allowed set is the one already computed.
        if (_ended)
        {
            Array.Clear(_allowed);
            _maskedState = null;
            return 0;
        }
        if (ReferenceEquals(_maskedState, _state))
            return _maskedCount;
        _maskedState = _state;
        _maskedCount = Walk();
        return _maskedCount;
    }

    private int Walk()
    {
        Array.Clear(_allowed);
        int count = 0;
        if (_state.CanEnd)
        {
            foreach (int id in _tokenizer.EndOfGenerationIds)
            {
                if (id < _allowed.Length)
                {
                    _allowed[id] = true;
                    count++;
                }
            }
        }
        _pending.Clear();
        _pending.Push((0, _state));
        while (_pending.Count > 0)
        {
            (int node, JsonGrammarState state) = _pending.Pop();
            for (int child = _trie.FirstChild(node); child >= 0; child = _trie.NextSibling(child))
            {
                JsonGrammarState? next = state.Step(_trie.Label(child));
                if (next is null)
                    continue;
                for (int token = _trie.FirstToken(child); token >= 0; token = _trie.NextToken(token))
                {
                    _allowed[token] = true;
                    count++;
                }
                if (_trie.FirstChild(child) >= 0)
                    _pending.Push((child, next));
            }
        }
        return count;
    }
}
