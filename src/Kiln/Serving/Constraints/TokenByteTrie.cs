using System.Runtime.CompilerServices;
using Kiln.Tokenizers;

namespace Kiln.Serving.Constraints;

/// <summary>
/// The bytes every token renders to, arranged as a trie (first-child / next-sibling), so a constraint can walk all
/// tokens sharing a prefix with one automaton step per trie edge. Built once per tokenizer and shared.
/// Tokens that render to nothing (control tokens) and end-of-generation tokens are left out: they never extend text.
/// </summary>
internal sealed class TokenByteTrie
{
    private static readonly ConditionalWeakTable<Tokenizer, TokenByteTrie> Cache = new();

    private readonly List<int> _firstChild = [-1];
    private readonly List<int> _nextSibling = [-1];
    private readonly List<byte> _label = [0];
    private readonly List<int> _firstToken = [-1];
    private readonly int[] _nextToken;
    private readonly int[] _rootChildren = new int[256];

    private TokenByteTrie(Tokenizer tokenizer)
    {
        VocabSize = tokenizer.VocabSize;
        _nextToken = new int[VocabSize];
        Array.Fill(_rootChildren, -1);
        for (int id = 0; id < VocabSize; id++)
        {
            _nextToken[id] = -1;
            if (tokenizer.IsEndOfGeneration(id))
                continue;
            ReadOnlySpan<byte> bytes = tokenizer.PieceBytes(id, renderSpecial: false);
            if (bytes.IsEmpty)
                continue;
            int node = 0;
            for (int i = 0; i < bytes.Length; i++)
                node = ChildOrAdd(node, bytes[i]);
            _nextToken[id] = _firstToken[node];
            _firstToken[node] = id;
        }
        NodeCount = _label.Count;
    }

    public int VocabSize { get; }

    public int NodeCount { get; }

    public static TokenByteTrie For(Tokenizer tokenizer) => Cache.GetValue(tokenizer, t => new TokenByteTrie(t));

    public int FirstChild(int node) => _firstChild[node];

    public int NextSibling(int node) => _nextSibling[node];

    public byte Label(int node) => _label[node];

    /// <summary>First token ending at <paramref name="node"/> (-1: none); the rest through <see cref="NextToken"/>.</summary>
    public int FirstToken(int node) => _firstToken[node];

    public int NextToken(int token) => _nextToken[token];

    private int ChildOrAdd(int node, byte b)
    {
        if (node == 0 && _rootChildren[b] >= 0)
            return _rootChildren[b];
        if (node != 0)
        {
            for (int child = _firstChild[node]; child >= 0; child = _nextSibling[child])
            {
                if (_label[child] == b)
                    return child;
            }
        }
        int added = _label.Count;
        _label.Add(b);
        _firstChild.Add(-1);
        _firstToken.Add(-1);
        _nextSibling.Add(_firstChild[node]);
        _firstChild[node] = added;
        if (node == 0)
            _rootChildren[b] = added;
        return added;
    }
}
