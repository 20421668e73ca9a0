package pii

import "strings"

// firstNames are common given names across several languages. Names that
// are also everyday words (May, Will, Mark, Grace, Rose, Bill) are left out:
// they would make "Will Smith" as likely as "Will Deploy".
var firstNames = set(`
James John Robert Michael William David Richard Joseph Thomas Charles Christopher Daniel Matthew
Anthony Donald Steven Paul Andrew Joshua Kenneth Kevin Brian George Timothy Ronald Edward Jason
Jeffrey Ryan Jacob Gary Nicholas Eric Jonathan Stephen Larry Justin Scott Brandon Benjamin Samuel
Gregory Alexander Patrick Jack Dennis Jerry Tyler Aaron Jose Adam Nathan Henry Douglas Zachary Peter
Kyle Ethan Walter Noah Jeremy Christian Keith Roger Terry Austin Sean Gerald Carl Harold Dylan Arthur
Lawrence Jordan Jesse Bryan Bruce Gabriel Logan Albert Juan Wayne Elijah Randy Roy Vincent Ralph
Eugene Russell Bobby Mason Philip Louis Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica
Sarah Karen Lisa Nancy Betty Margaret Sandra Ashley Kimberly Emily Donna Michelle Carol Amanda
Melissa Deborah Stephanie Rebecca Sharon Laura Cynthia Kathleen Amy Angela Shirley Anna Brenda Pamela
Emma Nicole Helen Samantha Katherine Christine Debra Rachel Carolyn Janet Catherine Maria Heather
Diane Julie Joyce Victoria Kelly Christina Lauren Joan Evelyn Olivia Judith Megan Cheryl Martha
Andrea Frances Hannah Jacqueline Ann Gloria Jean Kathryn Alice Teresa Sara Janice Doris Madison Julia
Abigail Sophia Marie Denise Amber Danielle Beverly Isabella Theresa Diana Natalie Brittany Charlotte
Marilyn Kayla Alexis Lori Ahmed Mohammed Muhammad Ali Fatima Aisha Omar Hassan Yusuf Ibrahim Layla
Wei Jing Li Ming Hiroshi Yuki Haruto Sakura Kenji Akira Raj Priya Anil Sunita Arjun Deepak Vikram
Ananya Rohan Lakshmi Carlos Luis Miguel Javier Alejandro Sofia Lucia Valentina Camila Diego Mateo
Pierre Jean-Luc Marie-Claire Francois Louise Camille Hans Klaus Jurgen Lukas Leon Greta Ingrid Sven
Lars Astrid Erik Olga Ivan Dmitri Sergei Natasha Anastasia Giovanni Giulia Marco Alessandro Chiara
Francesca Pedro Joao Ana Beatriz Kwame Ama Kofi Chinedu Ngozi Amara Zanele Sipho Aroha Tane Mei
Chen Xin Hyun Minjun Jiwoo Seojun Nguyen Thanh Linh Siddharth Meera Kavya Tomasz Katarzyna Agnieszka
Piotr Eitan Noa Yael Avi Leila Reza Darius Nadia Samir Karim Amina Elena Sofie Freya Maja Emil
`)

// notNames are capitalised words that follow a first name or a cue without
// being a name: places, weekdays, months, organisational words.
var notNames = set(`
The And Or But For From To In On At By With Of Inc Ltd LLC Corp Co Company Bank Group Team Project
Street Avenue Road Lane Drive Court Way Place Boulevard Monday Tuesday Wednesday Thursday Friday
Saturday Sunday January February March April June July August September October November December
University College School Hospital Department Office Service Services Support Please Thanks Thank
Hello Hi Dear Regards Best Ticket Order Invoice Account Meeting Update Report Server Cluster API
Federation Agent Agents Registry North South East West New Old Great Saint San Los Las El
Airport Center Centre Valley Services Park Hall Bridge River Mountain Lake Island Station Hotel
Museum Church Institute Foundation Systems Labs Solutions Partners Holdings Capital Street Square
`)

func set(s string) map[string]bool {
	m := make(map[string]bool)
	for _, w := range strings.Fields(s) {
		m[w] = true
	}
	return m
}
