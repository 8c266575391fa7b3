using System.CommandLine;

namespace RealtimeAssistant.Cli.Commands;

/// <summary>
/// `ra demo`: the README's main job. It grows as the project does; the demo-model and app
/// commands replace its body through <see cref="Handler"/>.
/// </summary>
public static class DemoCommand
{
    /// <summary>Set by the demo feature when it is built in; null until then.</summary>
    public static Func<ParseResult, CancellationToken, Task<int>>? Handler;
    public static readonly List<Option> Options = new();

    public static Command Create()
    {
        var cmd = new Command("demo", "Run the bundled demo model on the bundled video.");
        foreach (var o in Options) cmd.Options.Add(o);
        return cmd.WithAction((pr, ct) => Handler?.Invoke(pr, ct) ?? Task.FromResult(NotYet()));
    }

    static int NotYet()
    {
        Console.Error.WriteLine("demo: the bundled demo model is not in media/ yet (issue 3); nothing to run.");
        Console.Error.WriteLine("demo: the engine works today: ./ra caption --model DIR --image FILE");
        return 0;
    }
}
