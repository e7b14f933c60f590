namespace Kiln.Models.Lora;

/// <summary>The seven projections of a Llama block an adapter may target, in the order of their command-line names q,k,v,o,gate,up,down.</summary>
public enum LoraTarget
{
    Query,
    Key,
    Value,
    Output,
    Gate,
    Up,
    Down,
}
