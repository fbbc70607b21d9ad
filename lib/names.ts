/** Word lists for plausible names: people, restaurants, dishes. Drawn from a seeded Rng, so names are reproducible. */
import type { Rng } from "./random.ts";

const FIRST = [
  "Ana", "Ben", "Carla", "Dev", "Elif", "Femi", "Gita", "Hugo", "Ines", "Jamal", "Kenji", "Lena", "Mateo", "Nadia",
  "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Victor", "Wen", "Ximena", "Yusuf", "Zoe", "Aisha",
  "Bruno", "Chloe", "Diego", "Emma", "Farah", "Grace", "Hiro", "Ivan", "Julia", "Kwame", "Luis", "Maya", "Noah",
] as const;
const LAST = [
  "Alvarez", "Brown", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Haddad", "Ito", "Johnson", "Kim", "Lopez",
  "Miller", "Nguyen", "Okafor", "Patel", "Rossi", "Smith", "Tanaka", "Usman", "Vargas", "Wang", "Xu", "Young",
  "Zhang", "Cohen", "Murphy", "Singh", "Kowalski", "Mensah",
] as const;

const PLACE_FIRST = [
  "Golden", "Little", "Blue", "Corner", "Lucky", "Green", "Red", "Happy", "Royal", "Urban", "Spicy", "Old",
  "Midnight", "Sunny", "Brooklyn", "Harbor",
] as const;
const PLACE_KIND = [
  "Dragon", "Taqueria", "Pizzeria", "Noodle Bar", "Bistro", "Deli", "Curry House", "Sushi", "Grill", "Bakery",
  "Ramen", "Falafel", "Diner", "Dumplings", "Burger Joint", "Pho",
] as const;

const DISHES = [
  ["Margherita pizza", 1450], ["Chicken burrito", 1195], ["Pad thai", 1350], ["Salmon roll", 950],
  ["Cheeseburger", 1250], ["Falafel wrap", 995], ["Tonkotsu ramen", 1695], ["Caesar salad", 1095],
  ["Pork dumplings", 850], ["Butter chicken", 1750], ["Pho bo", 1495], ["Bagel with lox", 1250],
  ["Fries", 495], ["Iced tea", 350], ["Cheesecake", 695], ["Veggie bowl", 1295],
] as const;

export interface OrderItem {
  name: string;
  qty: number;
  price_cents: number;
}

export function personName(rng: Rng): string {
  return `${rng.pick(FIRST)} ${rng.pick(LAST)}`;
}

export function restaurantName(rng: Rng): string {
  return `${rng.pick(PLACE_FIRST)} ${rng.pick(PLACE_KIND)}`;
}

/** One to four different dishes, one to three of each. */
export function orderItems(rng: Rng): OrderItem[] {
  const count = rng.int(1, 4);
  const chosen = new Set<number>();
  while (chosen.size < count) chosen.add(rng.int(0, DISHES.length - 1));
  return [...chosen].map((i) => {
    const [name, price] = DISHES[i]!;
    return { name, qty: rng.int(1, 3), price_cents: price };
  });
}
