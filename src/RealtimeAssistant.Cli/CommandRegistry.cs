using System.CommandLine;

namespace RealtimeAssistant.Cli;

/// <summary>Commands that live in their own files and register here (train, eval, …).</summary>
public static partial class CommandRegistry
{
    static readonly List<Func<Command>> Factories = new();
    public static void Add(Func<Command> factory) => Factories.Add(factory);
    public static IEnumerable<Command> Extra() => Factories.Select(f => f());
}
