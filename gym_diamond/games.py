"""Atari game names without the emulator: what registration and name checks need at ``import gym_diamond``.

ale-py takes tens of milliseconds to import and loads its emulator; a user who only opens a dream needs
neither. ``ATARI_GAMES`` lists the games ale-py registers as ``ALE/<Name>-v5`` (its multi-player-only ROMs
have no such id); ``tests`` check it against the installed ale-py, so an upgrade that adds a game shows.
"""

from __future__ import annotations

__all__ = ["ATARI_GAMES", "atari_game_name", "normalise_game_name"]

ATARI_GAMES: tuple[str, ...] = (
    "Adventure", "AirRaid", "Alien", "Amidar", "Assault", "Asterix", "Asteroids", "Atlantis", "Atlantis2",
    "Backgammon", "BankHeist", "BasicMath", "BattleZone", "BeamRider", "Berzerk", "Blackjack", "Bowling", "Boxing",
    "Breakout", "Carnival", "Casino", "Centipede", "ChopperCommand", "CrazyClimber", "Crossbow", "Darkchambers",
    "Defender", "DemonAttack", "DonkeyKong", "DoubleDunk", "Earthworld", "ElevatorAction", "Enduro", "Entombed",
    "Et", "FishingDerby", "FlagCapture", "Freeway", "Frogger", "Frostbite", "Galaxian", "Gopher", "Gravitar",
    "Hangman", "HauntedHouse", "Hero", "HumanCannonball", "IceHockey", "Jamesbond", "JourneyEscape", "Kaboom",
    "Kangaroo", "KeystoneKapers", "KingKong", "Klax", "Koolaid", "Krull", "KungFuMaster", "LaserGates",
    "LostLuggage", "MarioBros", "MiniatureGolf", "MontezumaRevenge", "MrDo", "MsPacman", "NameThisGame", "Othello",
    "Pacman", "Phoenix", "Pitfall", "Pitfall2", "Pong", "Pooyan", "PrivateEye", "Qbert", "Riverraid", "RoadRunner",
    "Robotank", "Seaquest", "SirLancelot", "Skiing", "Solaris", "SpaceInvaders", "SpaceWar", "StarGunner",
    "Superman", "Surround", "Tennis", "Tetris", "TicTacToe3D", "TimePilot", "Trondead", "Turmoil", "Tutankham",
    "UpNDown", "Venture", "VideoCheckers", "VideoChess", "VideoCube", "VideoPinball", "WizardOfWor", "WordZapper",
    "YarsRevenge", "Zaxxon",
)


def normalise_game_name(name: str) -> str:
    """A game's name as its key: lower case, no ``ALE/`` prefix or ``-v5`` suffix, no separators.

    "MsPacman", "ms_pacman", "ALE/MsPacman-v5" and "ms pacman" all give "mspacman".
    """
    key = name.lower().removeprefix("ale/").removesuffix("-v5")
    return key.replace("_", "").replace("-", "").replace(" ", "")


_BY_KEY = {normalise_game_name(game): game for game in ATARI_GAMES}


def atari_game_name(name: str) -> str | None:
    """The CamelCase name of the Atari game ``name`` names ("pong", "ALE/Pong-v5": "Pong"), else None: a world
    model of another environment (its Gymnasium id) goes through the same code without Atari's extras."""
    return _BY_KEY.get(normalise_game_name(name))
